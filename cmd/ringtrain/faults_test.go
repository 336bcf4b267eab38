package main

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/localcluster"
)

// runCLIWithin is runCLI with a context that ends after limit.
func runCLIWithin(t *testing.T, limit time.Duration, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	return out.String(), err
}

// strongToken is a join token the CLI accepts; wrongToken is another.
const (
	strongToken = "0123456789abcdef0123456789abcdef"
	wrongToken  = "fedcba9876543210fedcba9876543210"
)

// secretPlaceholder is the join token deploy/k8s/base/secret.yaml ships.
func secretPlaceholder(t *testing.T) string {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "deploy", "k8s", "base", "secret.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "token:"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatal("deploy/k8s/base/secret.yaml has no token")
	return ""
}

// Coordinators and workers refuse, at start, a join token that is short or
// the manifests' placeholder, and say how to make one; the error never
// shows the token.
func TestJoinTokenMustBeStrong(t *testing.T) {
	dir := t.TempDir()
	jobFile := filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(jobFile, []byte("model: lenet5\ndataset: mnist\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(dir, "short-token")
	if err := os.WriteFile(short, []byte("hunter2-hunter2\n"), 0o600); err != nil { // 15 bytes
		t.Fatal(err)
	}
	commands := map[string][]string{
		"worker": {"worker", "--coordinator", "127.0.0.1:1", "--name", "w0", "--listen", "127.0.0.1:0",
			"--gossip", "127.0.0.1:0", "--http", "", "--advertise", "127.0.0.1"},
		"coordinator": {"coordinator", "-f", jobFile, "--etcd-endpoints", "http://127.0.0.1:1", "--store", filepath.Join(dir, "store"),
			"--name", "c0", "--listen", "127.0.0.1:0", "--gossip", "127.0.0.1:0", "--http", "", "--advertise", "127.0.0.1"},
	}
	placeholder := secretPlaceholder(t)
	for _, tc := range []struct {
		name, env, file string
		secret          string // what the error must not show
		want            []string
	}{
		{"short in the environment", "abc123", "", "abc123", []string{"6 bytes", "at least 16", "head -c 32 /dev/urandom | base64"}},
		{"short in a file", "", short, "hunter2", []string{short, "15 bytes", "at least 16", "head -c 32 /dev/urandom | base64"}},
		{"the manifests' placeholder", placeholder, "", placeholder, []string{"placeholder", "head -c 32 /dev/urandom | base64"}},
		{"another placeholder", "CHANGEME-please-change-me", "", "CHANGEME", []string{"placeholder"}},
	} {
		for what, args := range commands {
			t.Run(what+"/"+tc.name, func(t *testing.T) {
				t.Setenv(tokenEnv, tc.env)
				if tc.file != "" {
					args = append(args, "--token-file", tc.file)
				}
				start := time.Now()
				_, err := runCLIWithin(t, 5*time.Second, args...)
				if err == nil {
					t.Fatalf("%s with a %s token started (and ran until its context ended)", what, tc.name)
				}
				for _, w := range tc.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not say %q", err, w)
					}
				}
				if strings.Contains(err.Error(), tc.secret) {
					t.Errorf("error %q shows the token", err)
				}
				if took := time.Since(start); took > 3*time.Second {
					t.Errorf("%s took %v to refuse the token", what, took)
				}
			})
		}
	}
}

// `ringtrain worker --join-timeout` gives up on a coordinator that never
// answers, with an error naming it; without it the worker waits on.
func TestWorkerJoinTimeout(t *testing.T) {
	t.Setenv(tokenEnv, strongToken)
	port, err := localcluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port) // nothing listens there
	start := time.Now()
	_, err = runCLIWithin(t, 20*time.Second, "worker", "--coordinator", addr, "--join-timeout", "1500ms", "--name", "w0",
		"--listen", "127.0.0.1:0", "--gossip", "127.0.0.1:0", "--http", "", "--advertise", "127.0.0.1")
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "join timeout of 1.5s") {
		t.Fatalf("worker with --join-timeout 1500ms and nothing at %s: %v after %v", addr, err, took)
	}
	if took < 1500*time.Millisecond || took > 6*time.Second {
		t.Errorf("the worker gave up after %v, want about 1.5s", took)
	}
}
