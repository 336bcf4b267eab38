package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ringtrain/ringtrain/localcluster"
)

// chromium returns the path of a headless-capable Chromium, or "".
func chromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// syncBuffer is a process's output, written and read concurrently.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// genView is one entry of the dashboard's generations view as the page
// shows it (its data attributes).
type genView struct {
	Number int    `json:"n"`
	Paused bool   `json:"p"`
	Causes string `json:"c"` // "kind:worker kind:worker …"
	Ring   string `json:"r"` // the ring's workers, space-separated
}

// TestDashboardInBrowser opens the dashboard of a running `ringtrain train
// --workers 3 --ui 127.0.0.1:PORT` on the real MNIST in headless Chromium
// (Debian's chromium, driven over the DevTools protocol), sees the loss
// curve gain points between two looks, SIGKILLs a worker process, and sees
// it leave and a new generation appear in the generations view. Full-page
// screenshots go to $RINGTRAIN_ARTIFACTS, or a temporary directory.
func TestDashboardInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("trains on a local cluster and drives a browser")
	}
	if runtime.GOOS != "linux" {
		t.Skip("finds the worker's process through /proc")
	}
	browser := chromium()
	if browser == "" {
		t.Skip("no headless Chromium on PATH: install Debian's chromium package (apt-get install chromium) to run the dashboard's browser test")
	}
	artifacts := os.Getenv("RINGTRAIN_ARTIFACTS")
	if artifacts == "" {
		artifacts = t.TempDir()
	}
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	bin, data := binary(t)
	port, err := localcluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)

	// The job (5 epochs of 938 steps) outlasts the looks below on any
	// machine; it is interrupted once they are done. The coordinator
	// records the curves every 50 steps. With min_workers 2 and no
	// restarts, the ring goes on without a killed worker.
	dir := t.TempDir()
	jobFile := filepath.Join(dir, "job.yaml")
	spec := "name: dashboard-test\nmodel: lenet5\ndataset: mnist\nepochs: 5\ntest_limit: 2000\ncheckpoint_every: 100\nworkers: 3\nmin_workers: 2\n"
	if err := os.WriteFile(jobFile, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "train", "-f", jobFile, "--workers", "3", "--max-restarts", "0",
		"--out", filepath.Join(dir, "run"), "--ui", fmt.Sprintf("127.0.0.1:%d", port))
	cmd.Env = append(os.Environ(), "RINGTRAIN_DATA="+data)
	var output syncBuffer
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		// Ctrl-C: the ring checkpoints and the workers leave.
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(60 * time.Second):
			for _, name := range []string{"worker-0", "worker-1", "worker-2"} {
				if pid := childWorker(cmd.Process.Pid, name); pid > 0 {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			cmd.Process.Kill()
			<-exited
			t.Errorf("train did not stop within 60 s of SIGINT; output:\n%s", output.String())
		}
		if t.Failed() {
			t.Logf("train's output:\n%s", output.String())
		}
	}()

	// waitFor polls cond until it holds; it fails the test after limit,
	// or when train has exited (a page keeps showing what it last got).
	waitFor := func(what string, limit time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(limit)
		for !cond() {
			select {
			case err := <-exited:
				exited <- err
				t.Fatalf("waiting for %s: train exited: %v", what, err)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %s within %v", what, limit)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	waitFor("dashboard at "+url, 60*time.Second, func() bool {
		resp, err := http.Get(url + "api/status")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if !strings.Contains(output.String(), "dashboard: "+url) {
		t.Errorf("train does not say where the dashboard is:\n%s", output.String())
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.NoSandbox, chromedp.WindowSize(1280, 1000))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancelTab := chromedp.NewContext(actx)
	defer cancelTab()
	ctx, cancelTime := context.WithTimeout(ctx, 2*time.Minute) // catches hangs only
	defer cancelTime()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("opening %s in %s: %v", url, browser, err)
	}
	eval := func(expr string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
		if err != nil {
			t.Fatalf("evaluating %s: %v", expr, err)
		}
		return v
	}
	points := func() int {
		n, _ := strconv.Atoi(eval(`document.getElementById("chart-loss").dataset.points`))
		return n
	}
	generations := func() []genView {
		var gs []genView
		js := eval(`JSON.stringify([...document.querySelectorAll("#generations li")].reverse().map(li => ({n: +li.dataset.number, p: li.dataset.paused === "true", c: li.dataset.causes, r: li.dataset.ring})))`)
		if err := json.Unmarshal([]byte(js), &gs); err != nil {
			t.Fatalf("generations view %s: %v", js, err)
		}
		return gs // oldest first
	}
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		path := filepath.Join(artifacts, name)
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot %s (%d bytes)", path, len(png))
	}

	// The curves grow between two looks.
	waitFor("loss curve with 2 points", 60*time.Second, func() bool { return points() >= 2 })
	first := points()
	shot("dashboard-1.png")
	waitFor("loss curve growing", 30*time.Second, func() bool { return points() > first })
	second := points()
	shot("dashboard-2.png")
	t.Logf("loss curve: %d points, then %d (%.1f s in)", first, second, time.Since(began).Seconds())
	if n := eval(`document.getElementById("workers").dataset.count`); n != "3" {
		t.Errorf("the ring view shows %s workers, want 3", n)
	}
	if ips := eval(`document.getElementById("chart-ips").dataset.points`); ips == "0" {
		t.Error("the images/s curve is empty")
	}
	waitFor("the first generation", 10*time.Second, func() bool { return len(generations()) > 0 })
	before := generations()
	last := before[len(before)-1].Number
	if !strings.Contains(before[0].Causes, "start:") {
		t.Errorf("the first generation's causes %q do not say the job started", before[0].Causes)
	}

	waitFor("a committed checkpoint in the checkpoints view", 60*time.Second, func() bool {
		return eval(`document.getElementById("checkpoints").dataset.count`) != "0"
	})

	// SIGKILL worker-1: memberlist declares it dead, and a new generation
	// of the two others forms.
	pid := childWorker(cmd.Process.Pid, "worker-1")
	if pid == 0 {
		t.Fatalf("found no worker-1 process; output:\n%s", output.String())
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	var after []genView
	waitFor("worker-1 leaving and a new generation in the generations view", 60*time.Second, func() bool {
		after = generations()
		left := false
		for _, g := range after[len(before):] {
			left = left || strings.Contains(g.Causes, "dead:worker-1") || strings.Contains(g.Causes, "silent:worker-1")
			if left && !g.Paused && g.Number > last && g.Ring == "worker-0 worker-2" {
				return true
			}
		}
		return false
	})
	t.Logf("worker-1 (pid %d) killed; %.1f s later the generations view shows %+v", pid, time.Since(killed).Seconds(), after[len(before):])
	shot("dashboard-3.png")
	if n := eval(`document.getElementById("workers").dataset.count`); n != "2" {
		t.Errorf("after the kill the ring view shows %s workers, want 2", n)
	}
	if !strings.Contains(output.String(), "worker-1 exited: signal: killed") {
		t.Errorf("train does not report the kill:\n%s", output.String())
	}

	// On a phone's screen the page fits its width: wide tables scroll
	// inside their boxes.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulatePortrait, chromedp.EmulateMobile, chromedp.EmulateScale(2))); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // a poll, and the charts redrawn at the new width
	if w := eval(`document.documentElement.scrollWidth + " " + window.innerWidth`); w != "390 390" {
		wide := eval(`[...document.querySelectorAll("body *")].filter(e => e.getBoundingClientRect().right > window.innerWidth + 1).slice(0, 5).map(e => e.tagName + "#" + e.id + "." + e.className).join(", ")`)
		t.Errorf("on a 390 px wide screen the page is %s px wide (page, window); too wide: %s", w, wide)
	}
	shot("dashboard-phone.png")
	t.Logf("screenshots in %s; %.1f s in all", artifacts, time.Since(began).Seconds())
}
