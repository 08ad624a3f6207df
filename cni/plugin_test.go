package main

import (
	"bufio"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
)

func result(t *testing.T, js string) *current.Result {
	t.Helper()
	r, err := current.NewResult([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	return r.(*current.Result)
}

// What Debian's ptp 1.1.1 returns: the host veth, then eth0 in the sandbox.
const ptpResult = `{"cniVersion":"1.0.0",
 "interfaces":[{"name":"veth1a2b3c4d","mac":"aa:bb:cc:dd:ee:01"},{"name":"eth0","mac":"aa:bb:cc:dd:ee:02","sandbox":"/run/netns/p"}],
 "ips":[{"interface":1,"address":"10.1.0.5/24","gateway":"10.1.0.1"}]}`

// bridge: the bridge, the host veth, eth0.
const bridgeResult = `{"cniVersion":"1.0.0",
 "interfaces":[{"name":"cni0","mac":"aa:bb:cc:dd:ee:00"},{"name":"vethabc","mac":"aa:bb:cc:dd:ee:01"},{"name":"eth0","sandbox":"/run/netns/p"}],
 "ips":[{"interface":2,"address":"10.2.0.7/24","gateway":"10.2.0.1"},{"interface":2,"address":"fd00::7/64"},{"interface":0,"address":"10.2.0.1/24"}]}`

func TestHostInterface(t *testing.T) {
	links := map[string]Link{"veth1a2b3c4d": {Index: 12, Kind: "veth"}, "cni0": {Index: 5, Kind: "bridge"}, "vethabc": {Index: 13, Kind: "veth"}}
	got, err := hostInterface(result(t, ptpResult), links)
	if err != nil || got != (Interface{Name: "veth1a2b3c4d", Index: 12}) {
		t.Fatalf("ptp: %v %v", got, err)
	}
	got, err = hostInterface(result(t, bridgeResult), links)
	if err != nil || got != (Interface{Name: "vethabc", Index: 13}) {
		t.Fatalf("bridge: %v %v", got, err)
	}
	delete(links, "vethabc")
	if _, err := hostInterface(result(t, bridgeResult), links); err == nil || !strings.Contains(err.Error(), `"vethabc" does not exist`) {
		t.Fatalf("missing veth: %v", err)
	}
	onlyBridge := `{"cniVersion":"1.0.0","interfaces":[{"name":"cni0"},{"name":"eth0","sandbox":"x"}],"ips":[]}`
	if _, err := hostInterface(result(t, onlyBridge), links); err == nil || !strings.Contains(err.Error(), "all bridges") {
		t.Fatalf("bridge only: %v", err)
	}
	none := `{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"x"}],"ips":[]}`
	if _, err := hostInterface(result(t, none), links); err == nil || !strings.Contains(err.Error(), "no host-side interface") {
		t.Fatalf("none: %v", err)
	}
}

func TestPodAddresses(t *testing.T) {
	if got := podAddresses(result(t, ptpResult)); strings.Join(got, ",") != "10.1.0.5/24" {
		t.Fatalf("ptp: %v", got)
	}
	// The bridge's own address (interface 0, not in the sandbox) is not the pod's.
	if got := podAddresses(result(t, bridgeResult)); strings.Join(got, ",") != "10.2.0.7/24,fd00::7/64" {
		t.Fatalf("bridge: %v", got)
	}
}

func TestListLinks(t *testing.T) {
	links, err := listLinks()
	if err != nil {
		t.Fatal(err)
	}
	if lo, ok := links["lo"]; !ok || lo.Index != 1 {
		t.Fatalf("lo: %+v in %v", lo, links)
	}
}

func TestNestedString(t *testing.T) {
	// IFLA_INFO_DATA (2, 8 bytes) then IFLA_INFO_KIND (1) "veth\0" padded to 12 bytes.
	b := []byte{8, 0, 2, 0, 1, 2, 3, 4, 9, 0, 1, 0, 'v', 'e', 't', 'h', 0, 0, 0, 0}
	if got := nestedString(b, iflaInfoKind); got != "veth" {
		t.Fatalf("got %q", got)
	}
	if got := nestedString(b[:3], iflaInfoKind); got != "" {
		t.Fatalf("short: %q", got)
	}
}

// A one-shot agent: answers the first request with answer after delay.
func fakeAgent(t *testing.T, answer string, delay time.Duration) (string, <-chan Request) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "cni.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	got := make(chan Request, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		line, _ := bufio.NewReader(c).ReadBytes('\n')
		var r Request
		_ = json.Unmarshal(line, &r)
		got <- r
		time.Sleep(delay)
		_, _ = c.Write([]byte(answer + "\n"))
	}()
	return sock, got
}

func TestSend(t *testing.T) {
	req := &Request{Op: "add", ContainerID: "c1", Namespace: "ns", Pod: "p", Interface: &Interface{Name: "veth1", Index: 7}, IPs: []string{"10.1.0.5/24"}}
	sock, got := fakeAgent(t, `{"ok":true}`, 0)
	if err := Send(sock, req, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if r := <-got; r.Interface.Index != 7 || r.IPs[0] != "10.1.0.5/24" || r.Op != "add" {
		t.Fatalf("request: %+v", r)
	}

	sock, _ = fakeAgent(t, `{"ok":false,"error":"no identity yet"}`, 0)
	err := Send(sock, req, 2*time.Second)
	if ae, ok := err.(*AgentError); !ok || ae.Reason != "no identity yet" {
		t.Fatalf("refusal: %v", err)
	}

	sock, _ = fakeAgent(t, `{"ok":true}`, time.Second)
	if err := Send(sock, req, 200*time.Millisecond); err == nil || !strings.Contains(err.Error(), "did not answer within") {
		t.Fatalf("timeout: %v", err)
	}

	if err := Send(filepath.Join(t.TempDir(), "none.sock"), req, time.Second); err == nil || !strings.Contains(err.Error(), "not running") {
		t.Fatalf("no agent: %v", err)
	}
}

func TestAskNamesThePod(t *testing.T) {
	sock, _ := fakeAgent(t, `{"ok":false,"error":"pod ns/p has no security identity yet"}`, 0)
	err := ask(&NetConf{Socket: sock}, &Request{Op: "add", Namespace: "ns", Pod: "p", IPs: []string{}}, 2*time.Second)
	e, ok := err.(*types.Error)
	if !ok || e.Code != types.ErrTryAgainLater || !strings.Contains(e.Msg, "pod ns/p: the Sluice agent refused the pod: pod ns/p has no security identity yet") {
		t.Fatalf("got %#v", err)
	}
}
