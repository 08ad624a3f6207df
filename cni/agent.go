package main

// The agent's wire protocol: one JSON request line, one JSON response line, over a unix socket
// (operator/src/agent/cni-protocol.ts is the other side).

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// Interface is the pod's host-side interface in the node's network namespace.
type Interface struct {
	Name  string `json:"name"`
	Index int    `json:"index"`
}

// Request is one add, del or check.
type Request struct {
	Op          string     `json:"op"`
	ContainerID string     `json:"containerId"`
	Namespace   string     `json:"namespace"`
	Pod         string     `json:"pod"`
	PodUID      string     `json:"podUid,omitempty"`
	Interface   *Interface `json:"interface,omitempty"`
	// Addresses with their prefix length as prevResult has them ("10.1.0.5/24").
	IPs []string `json:"ips"`
	// How long the agent may wait before it answers (it answers with its reason before the plugin
	// gives up).
	TimeoutMs int64 `json:"timeoutMs,omitempty"`
}

// Response is the agent's answer.
type Response struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// AgentError is the agent's own no, with its reason.
type AgentError struct{ Reason string }

func (e *AgentError) Error() string { return e.Reason }

// Send delivers a request and waits for the answer, all within timeout.
func Send(socket string, req *Request, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	conn, err := net.DialTimeout("unix", socket, timeout)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("the Sluice agent is not running on this node (no socket %s)", socket)
		}
		return fmt.Errorf("cannot reach the Sluice agent at %s: %w", socket, err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(deadline); err != nil {
		return err
	}
	line, err := json.Marshal(req)
	if err != nil {
		return err
	}
	if _, err := conn.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("sending to the Sluice agent at %s: %w", socket, err)
	}
	answer, err := bufio.NewReader(conn).ReadBytes('\n')
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("the Sluice agent at %s did not answer within %s", socket, timeout)
		}
		return fmt.Errorf("reading the Sluice agent's answer at %s: %w", socket, err)
	}
	var resp Response
	if err := json.Unmarshal(answer, &resp); err != nil {
		return fmt.Errorf("the Sluice agent at %s answered %q: %w", socket, answer, err)
	}
	if !resp.OK {
		if resp.Error == "" {
			resp.Error = "no reason given"
		}
		return &AgentError{Reason: resp.Error}
	}
	return nil
}
