package dashboard

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net"
	"net/http"
	"strings"
)

// CookieName is the cookie that carries a browser's proof of a token.
const CookieName = "ringtrain_token"

// cookieLabel keys the cookie's value: the cookie holds
// HMAC-SHA256(token, cookieLabel) in hex, never the token itself, so a
// cookie that leaks opens the dashboard but tells nothing that could join
// the job.
const cookieLabel = "ringtrain dashboard cookie v1"

func cookieValue(token string) string {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte(cookieLabel))
	return hex.EncodeToString(m.Sum(nil))
}

// RequireToken serves h only to requests that show one of tokens (empty
// ones are ignored):
//
//   - an "Authorization: Bearer TOKEN" header (scripts, curl);
//   - the cookie CookieName, set as below (browsers);
//   - a "token" query parameter on a GET: the answer is a redirect (303) to
//     the same URL without it, which sets the cookie (HttpOnly,
//     SameSite=Strict, Path=/; Secure over TLS), so a dashboard opened once
//     as http://HOST:PORT/?token=TOKEN keeps working, its page polling its
//     JSON with the cookie, and the token does not stay in the address
//     bar.
//
// Every other request gets 401 with a WWW-Authenticate: Bearer challenge.
func RequireToken(h http.Handler, tokens ...string) http.Handler {
	var valid, cookies []string
	for _, t := range tokens {
		if t != "" {
			valid = append(valid, t)
			cookies = append(cookies, cookieValue(t))
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if q := r.URL.Query(); q.Has("token") && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			tok := q.Get("token")
			if !oneOf(tok, valid) {
				unauthorized(w)
				return
			}
			http.SetCookie(w, &http.Cookie{
				Name: CookieName, Value: cookieValue(tok), Path: "/",
				HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
			})
			q.Del("token")
			u := *r.URL
			u.RawQuery = q.Encode()
			w.Header().Set("Cache-Control", "no-store")
			w.Header().Set("Referrer-Policy", "no-referrer")
			http.Redirect(w, r, u.RequestURI(), http.StatusSeeOther)
			return
		}
		if auth := r.Header.Get("Authorization"); len(auth) > 7 && strings.EqualFold(auth[:7], "Bearer ") {
			if oneOf(auth[7:], valid) {
				h.ServeHTTP(w, r)
				return
			}
		} else if c, err := r.Cookie(CookieName); err == nil && oneOf(c.Value, cookies) {
			h.ServeHTTP(w, r)
			return
		}
		unauthorized(w)
	})
}

// oneOf reports whether s is one of set, comparing in constant time.
func oneOf(s string, set []string) bool {
	ok := 0
	for _, v := range set {
		ok |= subtle.ConstantTimeCompare([]byte(s), []byte(v))
	}
	return ok == 1
}

func unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="ringtrain"`)
	http.Error(w, "ringtrain: this needs a token: send \"Authorization: Bearer TOKEN\", "+
		"or open /?token=TOKEN once in a browser (the join token, or the job's status token)", http.StatusUnauthorized)
}

// IsLoopback reports whether addr (a listener's bound address) is on the
// loopback interface only, where just this machine reaches it.
func IsLoopback(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}
