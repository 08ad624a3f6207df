// sluice-apiserver runs a real kube-apiserver and an embedded etcd in one process, on loopback, for
// Sluice's integration tests, lab and demo. It prints one JSON line on stdout once the server is ready
// and removes everything it created when it gets SIGTERM or SIGINT.
//
//	sluice-apiserver [-dir DIR] [-kubeconfig PATH] [-port N] [-authorization-mode RBAC|AlwaysAllow]
//	                 [-node-address IP] [-exit-with-parent] [-- extra kube-apiserver flags]
//
// With -node-address it serves a real cluster (test/cluster): it listens on and advertises that
// address, its certificate names it and the kubernetes Service IP, pods get service-account tokens
// (the controller manager mints them) and it reaches kubelets by their InternalIP.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

type readyLine struct {
	Ready      bool   `json:"ready"`
	Kubeconfig string `json:"kubeconfig"`
	Server     string `json:"server"`
	Etcd       string `json:"etcd"`
	Dir        string `json:"dir"`
	Pid        int    `json:"pid"`
	StartupMs  int64  `json:"startupMs"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "sluice-apiserver: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	start := time.Now()
	dirFlag := flag.String("dir", "", "work directory for certificates and etcd data (default: a new temp dir); removed on exit, except when a given -dir fails to start (for its logs)")
	kubeconfig := flag.String("kubeconfig", "", "where to write the admin kubeconfig (default: DIR/kubeconfig); removed on exit")
	port := flag.Int("port", 0, "secure port on 127.0.0.1 (0: any free port)")
	authz := flag.String("authorization-mode", "RBAC", "kube-apiserver --authorization-mode (the admin is in system:masters either way)")
	nodeAddr := flag.String("node-address", "", "serve a cluster: listen on and advertise this address instead of 127.0.0.1 (see apiServerArgs)")
	withParent := flag.Bool("exit-with-parent", false, "stop when the parent process dies (PR_SET_PDEATHSIG)")
	flag.Parse()

	if *withParent {
		// Tests that crash must not leave a server behind.
		if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGTERM), 0, 0, 0); err != nil {
			return fmt.Errorf("prctl(PR_SET_PDEATHSIG): %w", err)
		}
		if os.Getppid() == 1 {
			return errors.New("parent already gone")
		}
	}

	ctx, stopSignals := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stopSignals()
	go func() {
		<-ctx.Done()
		// A second signal kills at once.
		stopSignals()
	}()

	dir := *dirFlag
	if dir == "" {
		d, err := os.MkdirTemp("", "sluice-apiserver-")
		if err != nil {
			return err
		}
		dir = d
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	ready := false
	defer func() {
		// A caller that chose the directory may keep its log there: leave it for post-mortems of a
		// failed start; the caller removes it.
		if ready || *dirFlag == "" {
			os.RemoveAll(dir)
		}
	}()
	if *kubeconfig == "" {
		*kubeconfig = filepath.Join(dir, "kubeconfig")
	}
	defer os.Remove(*kubeconfig)

	host := "127.0.0.1"
	if *nodeAddr != "" {
		if net.ParseIP(*nodeAddr) == nil {
			return fmt.Errorf("-node-address %q is not an IP address", *nodeAddr)
		}
		host = *nodeAddr
	}
	p, err := generatePKI(dir, host)
	if err != nil {
		return fmt.Errorf("generate certificates: %w", err)
	}

	etcd, etcdURL, err := startEtcd(dir)
	if err != nil {
		return err
	}
	// Runs after the API server has shut down (defers run in reverse order).
	defer etcd.Close()

	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(*port)))
	if err != nil {
		return fmt.Errorf("listen on %s:%d: %w", host, *port, err)
	}
	boundPort := ln.Addr().(*net.TCPAddr).Port
	server := "https://" + net.JoinHostPort(host, strconv.Itoa(boundPort))

	if err := writeKubeconfig(*kubeconfig, server, p); err != nil {
		ln.Close()
		return fmt.Errorf("write kubeconfig: %w", err)
	}

	apiCtx, cancelAPI := context.WithCancel(ctx)
	defer cancelAPI()
	// Closed when the API server returns; apiErr is its result. A closed channel can be waited on by
	// several selects, which a value sent once could not.
	var apiErr error
	apiDone := make(chan struct{})
	go func() {
		apiErr = runAPIServer(apiCtx, ln, boundPort, dir, etcdURL, *authz, *nodeAddr, p, flag.Args())
		close(apiDone)
	}()

	if err := waitReady(ctx, server, p, apiDone); err != nil {
		cancelAPI()
		waitStopped(apiDone)
		if apiErr != nil {
			return fmt.Errorf("%w: %v", err, apiErr)
		}
		return err
	}
	line, _ := json.Marshal(readyLine{
		Ready: true, Kubeconfig: *kubeconfig, Server: server, Etcd: etcdURL, Dir: dir,
		Pid: os.Getpid(), StartupMs: time.Since(start).Milliseconds(),
	})
	fmt.Println(string(line))
	ready = true

	select {
	case <-ctx.Done():
		waitStopped(apiDone)
		return nil
	case <-apiDone:
		if apiErr == nil {
			return errors.New("kube-apiserver stopped on its own")
		}
		return apiErr
	}
}

// waitStopped bounds the graceful shutdown so that a stuck request cannot keep the process alive.
func waitStopped(apiDone <-chan struct{}) {
	select {
	case <-apiDone:
	case <-time.After(20 * time.Second):
		fmt.Fprintln(os.Stderr, "sluice-apiserver: kube-apiserver did not stop within 20s; exiting anyway")
	}
}
