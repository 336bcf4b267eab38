package main

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ringtrain/ringtrain/api"
	"github.com/ringtrain/ringtrain/dashboard"
	"github.com/ringtrain/ringtrain/runlog"
)

// tokenSource is a dashboard Source with a fixed status and job file.
type tokenSource struct{}

func (tokenSource) Status(context.Context) *api.StatusReply {
	return &api.StatusReply{Job: "cookie-job", State: "running", Epochs: 1}
}
func (tokenSource) Records() []runlog.Record           { return nil }
func (tokenSource) Generations() []api.GenerationEvent { return nil }
func (tokenSource) Checkpoints() dashboard.Checkpoints { return dashboard.Checkpoints{} }
func (tokenSource) JobFile() string                    { return "name: cookie-job\n" }
func (s tokenSource) handler(tokens ...string) *httptest.Server {
	return httptest.NewServer(dashboard.RequireToken(dashboard.Handler(s), tokens...))
}

// TestDashboardTokenInBrowser opens a dashboard that needs a token in
// headless Chromium, once as /?token=TOKEN: the browser lands on / without
// the token in its address, holds a cookie its scripts cannot read, and
// the page's polls of the JSON endpoints, carrying the cookie, fill it in.
// A browser without the cookie gets the 401 page.
func TestDashboardTokenInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("drives a browser")
	}
	browser := chromium()
	if browser == "" {
		t.Skip("no headless Chromium on PATH: install Debian's chromium package (apt-get install chromium) to run the dashboard's browser tests")
	}
	srv := tokenSource{}.handler("s3cret")
	defer srv.Close()

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.NoSandbox)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	run := func(ctx context.Context, expr string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
		if err != nil {
			t.Fatalf("evaluating %s: %v", expr, err)
		}
		return v
	}
	ctx, cancelTab := chromedp.NewContext(actx)
	defer cancelTab()
	ctx, cancelTime := context.WithTimeout(ctx, time.Minute) // catches hangs only
	defer cancelTime()
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/?token=s3cret")); err != nil {
		t.Fatalf("opening the dashboard: %v", err)
	}
	if href := run(ctx, `location.href`); href != srv.URL+"/" {
		t.Errorf("the browser is at %s, want %s/ (the token out of the address)", href, srv.URL)
	}
	if c := run(ctx, `document.cookie`); c != "" {
		t.Errorf("the page's script reads the cookie %q; it must be HttpOnly", c)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(run(ctx, `document.title`), "cookie-job") ||
		!strings.Contains(run(ctx, `document.getElementById("jobfile").textContent`), "name: cookie-job") {
		if time.Now().After(deadline) {
			t.Fatalf("the page did not fill in: title %q, job file %q", run(ctx, `document.title`), run(ctx, `document.getElementById("jobfile").textContent`))
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Another browser profile, without the cookie.
	actx2, cancelAlloc2 := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc2()
	ctx2, cancelTab2 := chromedp.NewContext(actx2)
	defer cancelTab2()
	ctx2, cancelTime2 := context.WithTimeout(ctx2, time.Minute)
	defer cancelTime2()
	if err := chromedp.Do(ctx2, chromedp.Navigate(srv.URL+"/")); err != nil {
		t.Fatalf("opening the dashboard without the cookie: %v", err)
	}
	if body := run(ctx2, `document.body.innerText`); !strings.Contains(body, "needs a token") {
		t.Errorf("without the cookie the page shows %q, want the 401 notice", body)
	}
}
