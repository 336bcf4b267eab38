package netlimit

import (
	"net"
	"net/http"
	"time"
)

// Bounds of an HTTP listener of a ringtrain process (/healthz, /readyz,
// /metrics, /status, the dashboard): its legitimate clients are a few
// probes, a scraper and a handful of browsers.
const (
	HTTPMaxConns       = 256
	HTTPHeaderTimeout  = 5 * time.Second // to read a request's headers
	HTTPIdleTimeout    = 2 * time.Minute // a kept-alive connection with no request
	HTTPMaxHeaderBytes = 64 << 10
)

// HTTP serves h on ln with those bounds: at most maxConns connections
// (0: HTTPMaxConns; one more is closed at once, and onRefuse, when set,
// hears of it), a client that sends no headers within HTTPHeaderTimeout
// loses its connection, headers are at most HTTPMaxHeaderBytes. It returns
// the server (Shutdown it) and the limited listener it serves.
func HTTP(ln net.Listener, h http.Handler, maxConns int, onRefuse func(remote net.Addr)) (*http.Server, *Listener) {
	if maxConns <= 0 {
		maxConns = HTTPMaxConns
	}
	l := New(ln, maxConns)
	l.OnRefuse = onRefuse
	srv := &http.Server{Handler: h, ReadHeaderTimeout: HTTPHeaderTimeout, IdleTimeout: HTTPIdleTimeout, MaxHeaderBytes: HTTPMaxHeaderBytes}
	go srv.Serve(l)
	return srv, l
}
