package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/pflag"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apiserver/pkg/server/flagz"
	"k8s.io/client-go/rest"
	"k8s.io/component-base/cli/globalflag"
	basecompatibility "k8s.io/component-base/compatibility"
	"k8s.io/component-base/logs"
	logsapi "k8s.io/component-base/logs/api/v1"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
	"k8s.io/kubernetes/cmd/kube-apiserver/app/options"
)

// apiServerArgs are the flags of a minimal, fast-starting control plane: no controllers run here, so
// anything that needs one (service-account tokens, endpoints) is switched off, unless nodeAddr names
// the address of a real cluster's node (test/cluster), where a controller manager and kubelets run.
func apiServerArgs(port int, dir, etcdURL, authz, nodeAddr string, p *pki) []string {
	if nodeAddr == "" {
		return append(baseArgs(port, dir, etcdURL, authz, "127.0.0.1", p),
			// Pods created by tests carry no service account token: there is no token controller.
			"--disable-admission-plugins=ServiceAccount",
			"--endpoint-reconciler-type=none",
		)
	}
	return append(baseArgs(port, dir, etcdURL, authz, nodeAddr, p),
		"--advertise-address="+nodeAddr,
		// The kubernetes Service's endpoint: in-cluster clients that use its IP find the server.
		"--endpoint-reconciler-type=lease",
		// The node is named by its hostname, which does not resolve here; exec and logs dial its IP.
		"--kubelet-preferred-address-types=InternalIP",
		"--kubelet-client-certificate="+p.adminCertFile,
		"--kubelet-client-key="+p.adminKeyFile,
	)
}

func baseArgs(port int, dir, etcdURL, authz, bind string, p *pki) []string {
	return []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=" + bind,
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + filepath.Join(dir, "apiserver-certs"),
		"--tls-cert-file=" + p.servingFile,
		"--tls-private-key-file=" + p.servFile,
		"--client-ca-file=" + p.caFile,
		"--anonymous-auth=false",
		"--authorization-mode=" + authz,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + p.saPubFile,
		"--service-account-signing-key-file=" + p.saKeyFile,
		"--service-cluster-ip-range=" + serviceCIDR,
		"--allow-privileged=true",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--v=0",
	}
}

// runAPIServer mirrors what kube-apiserver's cobra command does, minus its process-wide signal
// handler: the caller's context decides when the server stops.
func runAPIServer(ctx context.Context, ln net.Listener, port int, dir, etcdURL, authz, nodeAddr string, p *pki, extra []string) error {
	s := options.NewServerRunOptions()
	namedFlagSets := s.Flags()
	s.Flagz = flagz.NamedFlagSetsReader{FlagSets: namedFlagSets}
	globalflag.AddGlobalFlags(namedFlagSets.FlagSet("global"), "kube-apiserver", logs.SkipLoggingConfigurationFlags())
	fs := pflag.NewFlagSet("kube-apiserver", pflag.ContinueOnError)
	for _, f := range namedFlagSets.FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse(append(apiServerArgs(port, dir, etcdURL, authz, nodeAddr, p), extra...)); err != nil {
		return fmt.Errorf("kube-apiserver flags: %w", err)
	}
	if err := s.GenericServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	rest.SetDefaultWarningHandler(rest.NoWarnings{})
	featureGate := s.GenericServerRunOptions.ComponentGlobalsRegistry.FeatureGateFor(basecompatibility.DefaultKubeComponent)
	if err := logsapi.ValidateAndApply(s.Logs, featureGate); err != nil {
		return err
	}
	// The listener was opened before the kubeconfig was written, so the port named there is ours.
	s.SecureServing.Listener = ln
	completed, err := s.Complete(ctx)
	if err != nil {
		return err
	}
	if errs := completed.Validate(); len(errs) != 0 {
		return utilerrors.NewAggregate(errs)
	}
	return app.Run(ctx, completed)
}

// waitReady polls /readyz, then waits for the default namespace, which tests use right away.
func waitReady(ctx context.Context, server string, p *pki, apiDone <-chan struct{}) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(p.caCert)
	cert, err := tls.X509KeyPair(p.adminCert, p.adminKey)
	if err != nil {
		return err
	}
	client := &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
		}},
	}
	defer client.CloseIdleConnections()
	deadline := time.After(120 * time.Second)
	for _, path := range []string{"/readyz", "/api/v1/namespaces/default"} {
		for {
			resp, err := client.Get(server + path)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("interrupted while waiting for %s", path)
			case <-apiDone:
				return errors.New("kube-apiserver exited before ready")
			case <-deadline:
				return fmt.Errorf("kube-apiserver not ready after 120s (%s)", path)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}
