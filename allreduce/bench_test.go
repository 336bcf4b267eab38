package allreduce

import (
	"context"
	"fmt"
	"sync"
	"testing"
)

// benchRing times all-reduce of size bytes over n in-process ranks.
func benchRing(b *testing.B, ts []Transport, size int, codec string) {
	n := len(ts)
	comms := make([]*Comm, n)
	for i := range comms {
		cd, err := NewCodec(codec, 0)
		if err != nil {
			b.Fatal(err)
		}
		comms[i], err = New(ts[i], Config{Job: 7, Generation: 3, Codec: cd})
		if err != nil {
			b.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var runs sync.WaitGroup
	for _, c := range comms {
		runs.Add(1)
		go func() { defer runs.Done(); c.Run(ctx) }()
	}
	bufs := make([][]float32, n)
	for i := range bufs {
		bufs[i] = make([]float32, size/4)
		fillRank(bufs[i], i, 1)
	}
	b.SetBytes(int64(size))
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		var wg sync.WaitGroup
		for i, c := range comms {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := c.AllReduce(ctx, bufs[i]); err != nil {
					b.Error(err)
				}
			}()
		}
		wg.Wait()
	}
	b.StopTimer()
	b.ReportMetric(float64(size)/(b.Elapsed().Seconds()/float64(b.N))/1e9*2*float64(n-1)/float64(n), "busbw_GB/s")
	cancel()
	runs.Wait()
	for _, c := range comms {
		c.Close()
	}
}

func BenchmarkRingGRPC(b *testing.B) {
	for _, n := range []int{2, 4} {
		for _, codec := range []string{"fp32", "bf16"} {
			b.Run(fmt.Sprintf("n%d_64MiB_%s", n, codec), func(b *testing.B) {
				gs := grpcRing(b, n, nil)
				ts := make([]Transport, n)
				for i := range gs {
					ts[i] = gs[i]
				}
				benchRing(b, ts, 64<<20, codec)
			})
		}
	}
}

func BenchmarkRingMem(b *testing.B) {
	for _, n := range []int{4, 16} {
		b.Run(fmt.Sprintf("n%d_16MiB", n), func(b *testing.B) {
			net, _ := NewMemNetwork(n, 4, 0)
			ts := make([]Transport, n)
			for i := range ts {
				ts[i] = net.Transport(i)
			}
			benchRing(b, ts, 16<<20, "fp32")
		})
	}
}
