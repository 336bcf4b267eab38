package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ringtrain/ringtrain/checkpoint"
	"github.com/ringtrain/ringtrain/job"
	"github.com/ringtrain/ringtrain/pki"
)

func newPKICmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pki",
		Short: "Make the certificates of a cluster: an authority, and one identity per process",
		Long: `A cluster's processes prove who they are with certificates of one
authority: every gRPC link is mutual TLS, and each end checks the other's
identity, the role and name its certificate carries, against the one it
claims. Workers cannot pose as one another or as a coordinator; a
coordinator's certificate is etcd's user for the job's keys, and nothing
else reaches etcd.

  ringtrain pki init DIR                        the authority: DIR/ca.crt, DIR/ca.key
  ringtrain pki issue DIR --role ROLE NAME...   DIR/<role>/<name>.crt and .key
  ringtrain pki show FILE...                    what a certificate says
  ringtrain pki etcd-auth ...                   etcd's access control for a job

Roles: coordinator (one certificate may serve every coordinator of a job,
e.g. the name "coordinator"), worker (one per worker, named as its --name:
the pod name), etcd (one per member, named as its DNS name), client (an
operator: 'ringtrain status'; "root" is etcd's administrator).

Keep DIR/ca.key off the cluster: only 'pki issue' needs it.`,
		Example: `  ringtrain pki init pki
  ringtrain pki issue pki --role coordinator coordinator
  ringtrain pki issue pki --role worker worker-0 worker-1 worker-2
  ringtrain pki issue pki --role etcd etcd-0.etcd etcd-1.etcd etcd-2.etcd --host localhost
  ringtrain pki issue pki --role client root operator`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newPKIInitCmd(), newPKIIssueCmd(), newPKIShowCmd(), newPKIEtcdAuthCmd())
	return cmd
}

func newPKIInitCmd() *cobra.Command {
	var (
		name     string
		validity time.Duration
	)
	cmd := &cobra.Command{
		Use:   "init DIR",
		Short: "Make a certificate authority in DIR (never replaces one)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := pki.Init(args[0], name, validity); err != nil {
				return err
			}
			cert, key := pki.CAPaths(args[0])
			fmt.Fprintf(cmd.OutOrStdout(), "authority %q: %s (give to every process), %s (keep it off the cluster)\n", name, cert, key)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "ringtrain CA", "the authority's common name")
	cmd.Flags().DurationVar(&validity, "validity", pki.CAValidity, "how long the authority is valid")
	return cmd
}

func newPKIIssueCmd() *cobra.Command {
	var (
		role     string
		hosts    []string
		validity time.Duration
	)
	cmd := &cobra.Command{
		Use:   "issue DIR --role ROLE NAME...",
		Short: "Issue a certificate and key for each NAME, signed by DIR's authority",
		Long: `Issues DIR/<role>/<name>.crt and DIR/<role>/<name>.key for each NAME.
Existing files are kept (an identity is never re-keyed behind its holder's
back): remove them to issue again. --host adds DNS names or IP addresses
(etcd's clients check them; an etcd member's name is one already).`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if role == "" {
				return fmt.Errorf("--role is required: one of %s", rolesText())
			}
			dir := args[0]
			var issued, kept int
			for _, name := range args[1:] {
				id := pki.Identity{Role: pki.Role(role), Name: name}
				cert, key, err := pki.Issue(dir, id, hosts, validity)
				if errors.Is(err, pki.ErrExists) {
					fmt.Fprintf(cmd.OutOrStdout(), "%s: kept (%v)\n", id, err)
					kept++
					continue
				}
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %s, %s\n", id, cert, key)
				issued++
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d issued, %d kept\n", issued, kept)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&role, "role", "", "the names' role: "+rolesText())
	f.StringSliceVar(&hosts, "host", nil, "DNS name or IP address the certificates also name (repeatable, comma-separated)")
	f.DurationVar(&validity, "validity", pki.LeafValidity, "how long the certificates are valid (at most the authority's)")
	return cmd
}

func rolesText() string {
	s := make([]string, len(pki.Roles))
	for i, r := range pki.Roles {
		s[i] = string(r)
	}
	return strings.Join(s, ", ")
}

func newPKIShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show FILE...",
		Short: "Print the identity, issuer, names and validity of certificates (PEM)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, path := range args {
				if err := showCert(cmd.OutOrStdout(), path); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

func showCert(w io.Writer, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return fmt.Errorf("%s: no PEM certificate", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	who := "no ringtrain identity"
	if c.IsCA {
		who = "certificate authority"
	} else if id, err := pki.IdentityOf(c); err == nil {
		who = id.String()
	}
	var names []string
	names = append(names, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	fmt.Fprintf(w, "%s: %s\n  subject %s, issuer %s\n  valid %s to %s", path, who, c.Subject, c.Issuer,
		c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))
	if time.Now().After(c.NotAfter) {
		fmt.Fprint(w, " (EXPIRED)")
	}
	fmt.Fprintln(w)
	if len(names) > 0 {
		fmt.Fprintf(w, "  names %s\n", strings.Join(names, ", "))
	}
	return nil
}

func newPKIEtcdAuthCmd() *cobra.Command {
	var (
		endpoints, file, user string
		p                     processFlags
		timeout               time.Duration
	)
	cmd := &cobra.Command{
		Use:   "etcd-auth --etcd-endpoints URLS -f JOB --tls-cert root.crt --tls-key root.key --tls-ca ca.crt",
		Short: "Give a job's coordinators, and no one else, its keys in etcd",
		Long: `Sets up etcd's role-based access control for the job, as etcd's
administrator (the client certificate "root"): a role that may read and
write the job's keys (/ringtrain/<job>/) and nothing else, the
coordinators' user (--user, the common name of their certificate) holding
it, the user root, and authentication on. etcd must run with TLS and
--client-cert-auth, so that it takes a client certificate's common name as
its user; workers then reach no key, whatever the network lets through.
Idempotent: run it once per job (a Kubernetes Job, an init step).`,
		Example: `  ringtrain pki etcd-auth --etcd-endpoints https://etcd-0.etcd:2379 -f job.yaml \
    --tls-cert pki/client/root.crt --tls-key pki/client/root.key --tls-ca pki/ca.crt`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return errors.New("-f (the job file) is required: its name is the job's key prefix")
			}
			spec, err := job.Load(file)
			if err != nil {
				return err
			}
			creds, err := p.creds(pki.Client)
			if err != nil {
				return err
			}
			if creds == nil || creds.Self.Name != "root" {
				return errors.New(`etcd-auth acts as etcd's administrator: give --tls-cert, --tls-key and --tls-ca of the client certificate "root" ('ringtrain pki issue DIR --role client root')`)
			}
			for _, e := range splitList(endpoints) {
				if !strings.HasPrefix(e, "https://") {
					return fmt.Errorf("--etcd-endpoints %s: etcd's access control is by client certificate, so its endpoints must be https://", e)
				}
			}
			cli, err := p.etcdClient(endpoints, creds, timeout)
			if err != nil {
				return err
			}
			defer cli.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			name := spec.JobName()
			if err := checkpoint.GrantJob(ctx, cli, name, user); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "etcd: user %q may read and write %s (role %s) and nothing else; authentication is on\n",
				user, checkpoint.EtcdJobPrefix(name), checkpoint.EtcdRole(name))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&endpoints, "etcd-endpoints", "", "etcd client URLs (https://), comma-separated")
	f.StringVarP(&file, "job", "f", "", "the job file")
	f.StringVar(&user, "user", "coordinator", "etcd's user for the job's coordinators: the common name (the pki name) of their certificate")
	f.StringVar(&p.tlsCert, "tls-cert", "", `etcd administrator's client certificate (the client "root")`)
	f.StringVar(&p.tlsKey, "tls-key", "", "private key (PEM) of --tls-cert")
	f.StringVar(&p.tlsCA, "tls-ca", "", "CA certificate (PEM) of the cluster")
	f.DurationVar(&timeout, "timeout", 30*time.Second, "how long to wait for etcd")
	return cmd
}
