module github.com/ringtrain/ringtrain/bench/openblas

go 1.26.0

require github.com/ringtrain/ringtrain v0.0.0

require golang.org/x/sys v0.50.0 // indirect

replace github.com/ringtrain/ringtrain => ../..
