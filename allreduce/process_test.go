package allreduce

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// childEnv makes the test binary act as one rank process (see childMain).
const childEnv = "RINGTRAIN_ALLREDUCE_TEST_RANK"

// childMain is a rank process: it joins the ring given by the environment
// (its listener is fd 3), prints "ready" after its first all-reduce, and
// all-reduces until an error, which it prints before exiting with 1.
func childMain() int {
	rank, _ := strconv.Atoi(os.Getenv(childEnv))
	addrs := strings.Split(os.Getenv(childEnv+"_ADDRS"), ",")
	lis, err := net.FileListener(os.NewFile(3, "listener"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx := context.Background()
	tr, err := DialRing(ctx, keyed(GRPCConfig{Rank: rank, Addrs: addrs, Listener: lis, Job: 1, Generation: 1, Timeout: 3 * time.Second, MaxFrame: 1 << 20,
		NoSharedMemory: os.Getenv(childEnv+"_NOSHM") != ""}))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	c, _ := New(tr, Config{Job: 1, Generation: 1, Chunk: 1 << 14})
	go c.Run(ctx)
	buf := make([]float32, 1<<18)
	for i := 0; ; i++ {
		if err := c.AllReduce(ctx, buf); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if i == 0 {
			fmt.Println("ready")
		}
	}
}

// TestProcessKill runs a ring of real processes over loopback gRPC, kills
// one with SIGKILL mid-stream, and checks that every survivor exits with an
// error naming a peer.
func TestProcessKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	for _, mode := range linkModes {
		t.Run(mode.name, func(t *testing.T) { testProcessKill(t, mode.noShm) })
	}
}

func testProcessKill(t *testing.T, noShm bool) {
	const n, victim = 4, 2
	exe, err := os.Executable()
	if err != nil {
		t.Skip(err)
	}
	files := make([]*os.File, n)
	addrs := make([]string, n)
	for i := range files {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs[i] = l.Addr().String()
		files[i], _ = l.(*net.TCPListener).File()
		l.Close()
		defer files[i].Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), hangTimeout)
	defer cancel()
	cmds := make([]*exec.Cmd, n)
	stderr := make([]strings.Builder, n)
	ready := make(chan int, n)
	var readers sync.WaitGroup
	for i := range cmds {
		c := exec.CommandContext(ctx, exe, "-test.run=^$")
		c.Env = append(os.Environ(), childEnv+"="+strconv.Itoa(i), childEnv+"_ADDRS="+strings.Join(addrs, ","))
		if noShm {
			c.Env = append(c.Env, childEnv+"_NOSHM=1")
		}
		c.ExtraFiles = []*os.File{files[i]}
		c.Stderr = &stderr[i]
		out, _ := c.StdoutPipe()
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		cmds[i] = c
		readers.Add(1)
		go func() {
			defer readers.Done()
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if sc.Text() == "ready" {
					ready <- i
				}
			}
		}()
	}
	for range n {
		select {
		case <-ready:
		case <-ctx.Done():
			t.Fatal("ranks never became ready")
		}
	}
	if err := cmds[victim].Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	readers.Wait()
	for i, c := range cmds {
		err := c.Wait()
		if ctx.Err() != nil {
			t.Fatal("survivors hung")
		}
		if i == victim {
			continue
		}
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Errorf("rank %d: exit %v, stderr %q", i, err, stderr[i].String())
		}
		t.Logf("rank %d: %s", i, strings.TrimSpace(stderr[i].String()))
		if !strings.Contains(stderr[i].String(), "peer") {
			t.Errorf("rank %d: error does not name a peer: %q", i, stderr[i].String())
		}
	}
}
