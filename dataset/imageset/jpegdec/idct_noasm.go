//go:build !amd64 || noasm

package jpegdec

// bestIDCT is the plain-Go IDCT: this build has no assembly.
var bestIDCT = idctGo

// idctImpls lists the IDCTs this build can run, for the tests.
var idctImpls = map[string]func(dst []uint8, stride int, blk *[64]int32){"go": idctGo}
