// sluice-cni: a chained CNI plugin that hands a new pod to the node's Sluice agent before the
// runtime starts its containers. It runs after the cluster's own plugin (ptp, bridge, Calico, ...),
// which created the pod's interfaces and addresses: on ADD it finds the pod's host-side interface
// and addresses in prevResult, tells the agent over a unix socket and waits until the agent answers
// that the pod's policy is in the BPF maps and its program attached on that interface. Fail closed:
// when the agent says no, does not answer in time or cannot be reached, ADD fails and the runtime
// tears the sandbox down and retries, so a pod never runs unenforced.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
)

const (
	defaultSocket  = "/run/sluice/cni.sock"
	defaultTimeout = 30 * time.Second
	// DEL must not hold up a sandbox's teardown for long.
	delTimeout = 5 * time.Second
	// The agent is asked to give up this much before the plugin does, so its reason (no identity
	// yet, pod not known) reaches the runtime instead of a bare timeout.
	agentMargin = time.Second
)

// NetConf is the plugin's configuration in the conflist, plus what the runtime adds.
type NetConf struct {
	types.PluginConf
	Socket         string `json:"socket,omitempty"`
	TimeoutSeconds int    `json:"timeoutSeconds,omitempty"`
}

// K8sArgs are the pod's identity in CNI_ARGS, as kubelet's runtimes (containerd, CRI-O) pass it.
type K8sArgs struct {
	types.CommonArgs
	K8S_POD_NAMESPACE          types.UnmarshallableString //nolint:revive
	K8S_POD_NAME               types.UnmarshallableString //nolint:revive
	K8S_POD_UID                types.UnmarshallableString //nolint:revive
	K8S_POD_INFRA_CONTAINER_ID types.UnmarshallableString //nolint:revive
}

func main() {
	skel.PluginMainFuncs(skel.CNIFuncs{Add: cmdAdd, Del: cmdDel, Check: cmdCheck},
		// 0.4.0 is the oldest version with CHECK; GC and STATUS (1.1.0) are accepted as no-ops.
		version.PluginSupports("0.4.0", "1.0.0", "1.1.0"),
		"sluice-cni: hands new pods to the Sluice agent (chained after the cluster's CNI plugin)")
}

func loadConf(data []byte) (*NetConf, error) {
	conf := &NetConf{}
	if err := json.Unmarshal(data, conf); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "sluice-cni: cannot parse the network configuration", err.Error())
	}
	if conf.Socket == "" {
		conf.Socket = defaultSocket
	}
	if conf.TimeoutSeconds < 0 {
		return nil, types.NewError(types.ErrInvalidNetworkConfig, "sluice-cni: timeoutSeconds must not be negative", "")
	}
	if err := version.ParsePrevResult(&conf.PluginConf); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "sluice-cni: cannot parse prevResult", err.Error())
	}
	return conf, nil
}

func (c *NetConf) timeout() time.Duration {
	if c.TimeoutSeconds == 0 {
		return defaultTimeout
	}
	return time.Duration(c.TimeoutSeconds) * time.Second
}

func podArgs(args *skel.CmdArgs) (*K8sArgs, error) {
	k := &K8sArgs{}
	k.IgnoreUnknown = true // runtimes pass more than the pod's identity
	if err := types.LoadArgs(args.Args, k); err != nil {
		return nil, types.NewError(types.ErrInvalidEnvironmentVariables, "sluice-cni: cannot parse CNI_ARGS", err.Error())
	}
	return k, nil
}

// prevResult as a 1.x result, the shape the interface and address lookup reads.
func prevResult(conf *NetConf) (*current.Result, error) {
	if conf.PrevResult == nil {
		return nil, types.NewError(types.ErrInvalidNetworkConfig,
			"sluice-cni: no prevResult: it must be chained after the plugin that creates the pod's interface", "")
	}
	r, err := current.NewResultFromResult(conf.PrevResult)
	if err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "sluice-cni: cannot convert prevResult", err.Error())
	}
	return r, nil
}

// The request for an ADD or CHECK: the pod, its host-side interface and addresses.
func endpointRequest(op string, args *skel.CmdArgs, conf *NetConf) (*Request, *current.Result, error) {
	k, err := podArgs(args)
	if err != nil {
		return nil, nil, err
	}
	pod := fmt.Sprintf("%s/%s", k.K8S_POD_NAMESPACE, k.K8S_POD_NAME)
	if k.K8S_POD_NAMESPACE == "" || k.K8S_POD_NAME == "" {
		return nil, nil, types.NewError(types.ErrInvalidEnvironmentVariables,
			"sluice-cni: CNI_ARGS has no K8S_POD_NAMESPACE and K8S_POD_NAME: only Kubernetes pods can be enforced", args.Args)
	}
	prev, err := prevResult(conf)
	if err != nil {
		return nil, nil, err
	}
	links, err := listLinks()
	if err != nil {
		return nil, nil, types.NewError(types.ErrInternal, "sluice-cni: pod "+pod+": cannot list the node's links", err.Error())
	}
	iface, err := hostInterface(prev, links)
	if err != nil {
		return nil, nil, types.NewError(types.ErrInvalidNetworkConfig, "sluice-cni: pod "+pod+": "+err.Error(), "")
	}
	ips := podAddresses(prev)
	if len(ips) == 0 {
		return nil, nil, types.NewError(types.ErrInvalidNetworkConfig, "sluice-cni: pod "+pod+": prevResult has no IP addresses", "")
	}
	return &Request{
		Op:          op,
		ContainerID: args.ContainerID,
		Namespace:   string(k.K8S_POD_NAMESPACE),
		Pod:         string(k.K8S_POD_NAME),
		PodUID:      string(k.K8S_POD_UID),
		Interface:   &iface,
		IPs:         ips,
	}, prev, nil
}

// ask sends a request and turns anything but the agent's yes into a CNI error naming the pod.
func ask(conf *NetConf, req *Request, timeout time.Duration) error {
	agentTimeout := timeout - agentMargin
	if agentTimeout < timeout/2 {
		agentTimeout = timeout / 2
	}
	req.TimeoutMs = agentTimeout.Milliseconds()
	pod := req.Namespace + "/" + req.Pod
	err := Send(conf.Socket, req, timeout)
	if err == nil {
		return nil
	}
	code := types.ErrTryAgainLater
	msg := fmt.Sprintf("sluice-cni: pod %s: %v", pod, err)
	if _, refused := err.(*AgentError); refused {
		msg = fmt.Sprintf("sluice-cni: pod %s: the Sluice agent refused the pod: %v", pod, err)
	}
	return types.NewError(code, msg, "fail closed: the pod is not started until the agent enforces its policy")
}

func cmdAdd(args *skel.CmdArgs) error {
	conf, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	req, prev, err := endpointRequest("add", args, conf)
	if err != nil {
		return err
	}
	if err := ask(conf, req, conf.timeout()); err != nil {
		return err
	}
	// Unchanged: this plugin only gates the pod's start.
	return types.PrintResult(prev, conf.CNIVersion)
}

// CHECK succeeds when the agent enforces the pod's endpoint on the interface prevResult names.
func cmdCheck(args *skel.CmdArgs) error {
	conf, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	req, _, err := endpointRequest("check", args, conf)
	if err != nil {
		return err
	}
	return ask(conf, req, conf.timeout())
}

// DEL tells the agent to forget the pod's declaration, best effort: it always succeeds (a failed
// DEL would block the sandbox's removal; the agent also drops declarations whose interface is gone).
func cmdDel(args *skel.CmdArgs) error {
	conf, err := loadConf(args.StdinData)
	if err != nil {
		conf = &NetConf{Socket: defaultSocket}
	}
	k, err := podArgs(args)
	if err != nil || k.K8S_POD_NAMESPACE == "" || k.K8S_POD_NAME == "" {
		return nil
	}
	timeout := conf.timeout()
	if timeout > delTimeout {
		timeout = delTimeout
	}
	req := &Request{
		Op:          "del",
		ContainerID: args.ContainerID,
		Namespace:   string(k.K8S_POD_NAMESPACE),
		Pod:         string(k.K8S_POD_NAME),
		PodUID:      string(k.K8S_POD_UID),
		IPs:         []string{},
		TimeoutMs:   timeout.Milliseconds(),
	}
	if err := Send(conf.Socket, req, timeout); err != nil {
		fmt.Fprintf(os.Stderr, "sluice-cni: DEL %s/%s: %v (ignored)\n", req.Namespace, req.Pod, err)
	}
	return nil
}
