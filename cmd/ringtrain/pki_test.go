package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The pki commands as an operator runs them: an authority, identities for
// each role, what a certificate says; nothing is replaced, and bad names
// and roles are refused with what is allowed.
func TestPKICommands(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	if out, err := runCLI(t, "pki", "init", dir); err != nil || !strings.Contains(out, "ca.crt") {
		t.Fatalf("pki init: %v\n%s", err, out)
	}
	if _, err := runCLI(t, "pki", "init", dir); err == nil || !strings.Contains(err.Error(), "never replaced") {
		t.Errorf("second pki init: %v", err)
	}
	out, err := runCLI(t, "pki", "issue", dir, "--role", "worker", "worker-0", "worker-1")
	if err != nil || !strings.Contains(out, "2 issued, 0 kept") {
		t.Fatalf("pki issue: %v\n%s", err, out)
	}
	if out, err := runCLI(t, "pki", "issue", dir, "--role", "worker", "worker-1", "worker-2"); err != nil || !strings.Contains(out, "1 issued, 1 kept") {
		t.Errorf("pki issue again: %v\n%s", err, out)
	}
	if _, err := runCLI(t, "pki", "issue", dir, "--role", "etcd", "etcd-0.etcd", "--host", "localhost,127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	out, err = runCLI(t, "pki", "show", filepath.Join(dir, "worker", "worker-0.crt"), filepath.Join(dir, "etcd", "etcd-0.etcd.crt"), filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`worker "worker-0"`, `etcd "etcd-0.etcd"`, "names etcd-0.etcd, localhost, 127.0.0.1", "certificate authority"} {
		if !strings.Contains(out, want) {
			t.Errorf("pki show: no %q in\n%s", want, out)
		}
	}
	if _, err := runCLI(t, "pki", "issue", dir, "--role", "admin", "x"); err == nil || !strings.Contains(err.Error(), "coordinator, worker, etcd, client") {
		t.Errorf("unknown role: %v", err)
	}
	if _, err := runCLI(t, "pki", "issue", dir, "worker-3"); err == nil || !strings.Contains(err.Error(), "--role is required") {
		t.Errorf("no role: %v", err)
	}
	if _, err := runCLI(t, "pki", "issue", dir, "--role", "worker", "../evil"); err == nil {
		t.Error("a name with a path in it was issued")
	}
	if _, err := os.Stat(filepath.Join(dir, "evil.crt")); err == nil {
		t.Error("a name with a path in it wrote outside its role's folder")
	}
	if _, err := runCLI(t, "pki", "show", filepath.Join(dir, "worker", "worker-0.key")); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("pki show of a key: %v", err)
	}
	// etcd-auth acts as root only.
	if _, err := runCLI(t, "pki", "etcd-auth", "--etcd-endpoints", "https://127.0.0.1:1", "-f", writeJob(t),
		"--tls-cert", filepath.Join(dir, "worker", "worker-0.crt"), "--tls-key", filepath.Join(dir, "worker", "worker-0.key"),
		"--tls-ca", filepath.Join(dir, "ca.crt")); err == nil || !strings.Contains(err.Error(), "not a client") {
		t.Errorf("etcd-auth with a worker's certificate: %v", err)
	}
}

func writeJob(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "job.yaml")
	if err := os.WriteFile(p, []byte("name: j\nmodel: lenet5\ndataset: mnist\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
