package checkpoint

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// EtcdJobPrefix is the prefix of every key of a job (it ends in a slash):
// its leader election, generation, state and committed checkpoints.
func EtcdJobPrefix(job string) string { return etcdRoot + job + "/" }

// EtcdRole is the name of the etcd role that may read and write a job's
// keys (see GrantJob).
func EtcdRole(job string) string { return "ringtrain-" + job }

// GrantJob sets up etcd's role-based access control for a job, as etcd's
// administrator: a role EtcdRole(job) that may read and write the job's
// keys (EtcdJobPrefix) and nothing else; user, etcd's name for the job's
// coordinators (the common name of their certificate: etcd started with
// --client-cert-auth takes a client certificate's common name as its user,
// so the user has no password), holding that role; the user "root" with
// etcd's root role (the administrator, by a certificate whose common name
// is root); and authentication enabled. Workers hold no etcd user: with
// authentication on, their certificates are refused every key.
//
// It is idempotent: run again (for another job, or after a failure) it
// keeps what exists. cli must be root's client once authentication is on.
func GrantJob(ctx context.Context, cli *clientv3.Client, job, user string) error {
	if job == "" || user == "" {
		return errors.New("checkpoint: etcd access: empty job or user name")
	}
	if user == "root" {
		return errors.New(`checkpoint: etcd access: the coordinators' user cannot be "root", etcd's administrator`)
	}
	exists := func(err error, already error) error {
		if errors.Is(err, already) {
			return nil
		}
		return err
	}
	noPassword := &clientv3.UserAddOptions{NoPassword: true}
	role, prefix := EtcdRole(job), EtcdJobPrefix(job)
	steps := []struct {
		what string
		do   func() error
	}{
		{"adding user root", func() error {
			_, err := cli.UserAddWithOptions(ctx, "root", "", noPassword)
			return exists(err, rpctypes.ErrUserAlreadyExist)
		}},
		{"granting root the root role", func() error {
			_, err := cli.UserGrantRole(ctx, "root", "root")
			return err
		}},
		{"adding role " + role, func() error {
			_, err := cli.RoleAdd(ctx, role)
			return exists(err, rpctypes.ErrRoleAlreadyExist)
		}},
		{fmt.Sprintf("letting role %s read and write %s", role, prefix), func() error {
			_, err := cli.RoleGrantPermission(ctx, role, prefix, clientv3.GetPrefixRangeEnd(prefix), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		}},
		{"adding user " + user, func() error {
			_, err := cli.UserAddWithOptions(ctx, user, "", noPassword)
			return exists(err, rpctypes.ErrUserAlreadyExist)
		}},
		{fmt.Sprintf("granting %s the role %s", user, role), func() error {
			_, err := cli.UserGrantRole(ctx, user, role)
			return err
		}},
		{"enabling authentication", func() error {
			_, err := cli.AuthEnable(ctx)
			return err
		}},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			return fmt.Errorf("checkpoint: etcd access for job %s: %s: %w", job, s.what, err)
		}
	}
	return nil
}
