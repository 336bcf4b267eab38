package main

import (
	"context"

	"github.com/ringtrain/ringtrain/job"
	"github.com/ringtrain/ringtrain/localcluster"
	"github.com/ringtrain/ringtrain/runlog"
)

// localCluster is what `ringtrain train --workers N` asks of
// localcluster.Run, which does all of it: an embedded etcd, a coordinator
// in this process and N worker processes of this binary.
type localCluster struct {
	spec        job.Spec
	out         string
	resume      bool
	maxRestarts int
	progress    *progress
	logf        func(string, ...any)
}

func (lc *localCluster) run(ctx context.Context) (runlog.Summary, error) {
	return localcluster.Run(ctx, localcluster.Options{
		Spec: lc.spec, Dir: lc.out, Resume: lc.resume, MaxRestarts: lc.maxRestarts,
		Progress: lc.progress, Logf: lc.logf,
	})
}
