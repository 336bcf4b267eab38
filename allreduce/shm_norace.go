//go:build !race

package allreduce

func shmRelease() {}
func shmAcquire() {}
