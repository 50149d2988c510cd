package cephfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// runner runs one ceph command (the words after "ceph") and returns what it
// printed on stdout. The real one is cli; unit tests script a fake.
type runner interface {
	run(ctx context.Context, args ...string) ([]byte, error)
}

// cli runs the ceph command of ceph-common as a child process, once per
// call, with the cluster's ceph.conf and our cephx identity.
type cli struct {
	binary  string
	conf    string
	user    string // cephx id, without "client."
	keyring string // "" = what ceph.conf says
	timeout time.Duration
	// sem bounds the ceph processes running at once: a burst of claims must
	// not start a Python interpreter per claim on a small node.
	sem chan struct{}
}

// globalArgs come before every command.
func (c *cli) globalArgs() []string {
	args := []string{"--conf", c.conf, "--id", c.user}
	if c.keyring != "" {
		args = append(args, "--keyring", c.keyring)
	}
	// A cluster that does not answer fails the call instead of hanging it;
	// the deadline of ctx bounds the rest.
	connect := int(c.timeout / time.Second)
	return append(args, "--connect-timeout", strconv.Itoa(max(connect, 1)), "--format", "json")
}

func (c *cli) run(ctx context.Context, args ...string) ([]byte, error) {
	select {
	case c.sem <- struct{}{}:
		defer func() { <-c.sem }()
	case <-ctx.Done():
		return nil, &CommandError{Args: args, Err: ctx.Err()}
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.binary, append(c.globalArgs(), args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// Killed at the deadline; its pipes are not waited for past this.
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if err == nil {
		return stdout.Bytes(), nil
	}
	ce := &CommandError{Args: args, Stderr: lastLines(stderr.String(), 5), Err: err}
	if ctx.Err() != nil {
		ce.Err = fmt.Errorf("%w after %s (%v)", ctx.Err(), c.timeout, err)
	}
	ce.Errno = errnoOf(stderr.String(), err)
	return nil, ce
}

// CommandError is a ceph command that failed. It wraps the errno the
// cluster answered (errors.Is(err, syscall.ENOENT)), or what kept the
// command from running. Args never hold a secret: keys only ever come back
// on stdout, which is not kept here.
type CommandError struct {
	Args   []string
	Errno  syscall.Errno // 0 when the cluster gave none
	Stderr string
	Err    error
}

func (e *CommandError) Error() string {
	msg := e.Stderr
	if msg == "" && e.Err != nil {
		msg = e.Err.Error()
	}
	return fmt.Sprintf("ceph %s: %s", strings.Join(e.Args, " "), msg)
}

// Unwrap gives the errno and the cause, so that errors.Is finds either.
func (e *CommandError) Unwrap() []error {
	var out []error
	if e.Errno != 0 {
		out = append(out, e.Errno)
	}
	if e.Err != nil {
		out = append(out, e.Err)
	}
	return out
}

// errnoNames are the errors the ceph command prints as "Error ENOENT: ..."
// that this backend tells apart.
var errnoNames = map[string]syscall.Errno{
	"ENOENT": syscall.ENOENT, "EEXIST": syscall.EEXIST, "EAGAIN": syscall.EAGAIN,
	"EINVAL": syscall.EINVAL, "ENOTEMPTY": syscall.ENOTEMPTY, "EPERM": syscall.EPERM,
	"EACCES": syscall.EACCES, "ENOTSUP": syscall.ENOTSUP, "EOPNOTSUPP": syscall.EOPNOTSUPP,
	"ETIMEDOUT": syscall.ETIMEDOUT, "ENOSPC": syscall.ENOSPC, "EDQUOT": syscall.EDQUOT,
	"EBUSY": syscall.EBUSY,
}

// errnoOf reads the errno of a failed ceph command: the "Error EXXX:" line
// it prints, else its exit status, which the ceph command sets to the
// errno. Anything else (Python died, the binary is missing) is 0.
func errnoOf(stderr string, err error) syscall.Errno {
	for _, line := range strings.Split(stderr, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "Error "); ok {
			name, _, _ := strings.Cut(rest, ":")
			if e, ok := errnoNames[name]; ok {
				return e
			}
		}
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() > 1 {
		// 1 is also what Python exits with on an exception: not an errno.
		return syscall.Errno(exit.ExitCode())
	}
	return 0
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// is reports whether err is a ceph command that failed with errno e.
func is(err error, e syscall.Errno) bool {
	var ce *CommandError
	return errors.As(err, &ce) && ce.Errno == e
}
