package main

// The pod's host-side interface and addresses in prevResult.

import (
	"encoding/binary"
	"fmt"
	"sort"
	"strings"
	"syscall"

	current "github.com/containernetworking/cni/pkg/types/100"
)

// Link is one link of the node's network namespace.
type Link struct {
	Index int
	// The rtnetlink link kind: "veth", "bridge", ... ("" for a physical device).
	Kind string
}

// hostInterface picks the pod's host-side interface: the interface prevResult reports outside any
// sandbox that is not a bridge (ptp reports one host veth; bridge reports the bridge and the
// host veth). A bridge is recognized by its link kind, the same fact /sys/class/net/NAME/bridge
// shows; the kind is read over netlink because sysfs shows the namespace it was mounted in, which
// is not the plugin's when a runtime (or a test) enters the node's namespace with nsenter --net.
func hostInterface(r *current.Result, links map[string]Link) (Interface, error) {
	var found []Interface
	var seen []string
	for _, i := range r.Interfaces {
		if i == nil || i.Sandbox != "" {
			continue
		}
		seen = append(seen, i.Name)
		l, ok := links[i.Name]
		if !ok {
			return Interface{}, fmt.Errorf("prevResult's host interface %q does not exist in this network namespace", i.Name)
		}
		if l.Kind == "bridge" {
			continue
		}
		found = append(found, Interface{Name: i.Name, Index: l.Index})
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		if len(seen) == 0 {
			return Interface{}, fmt.Errorf("prevResult has no host-side interface (one without a sandbox): is sluice-cni chained after the plugin that creates the pod's veth?")
		}
		return Interface{}, fmt.Errorf("prevResult's host-side interfaces (%s) are all bridges: the pod's own veth is missing", strings.Join(seen, ", "))
	}
	names := make([]string, len(found))
	for n, i := range found {
		names[n] = i.Name
	}
	return Interface{}, fmt.Errorf("prevResult has several host-side interfaces that are not bridges (%s): cannot tell which one is the pod's", strings.Join(names, ", "))
}

// podAddresses: the addresses of prevResult that belong to the pod (those of an interface in its
// sandbox, or of no interface in particular), as "address/prefix", sorted, without duplicates.
func podAddresses(r *current.Result) []string {
	seen := map[string]bool{}
	var out []string
	for _, ip := range r.IPs {
		if ip == nil {
			continue
		}
		if ip.Interface != nil {
			n := *ip.Interface
			if n < 0 || n >= len(r.Interfaces) || r.Interfaces[n] == nil || r.Interfaces[n].Sandbox == "" {
				continue
			}
		}
		s := ip.Address.String()
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

const (
	iflaLinkInfo = 18 // IFLA_LINKINFO
	iflaInfoKind = 1  // IFLA_INFO_KIND
	nlaTypeMask  = 0x3fff
)

// listLinks: every link of the current network namespace by name (one RTM_GETLINK dump).
func listLinks() (map[string]Link, error) {
	b, err := syscall.NetlinkRIB(syscall.RTM_GETLINK, syscall.AF_UNSPEC)
	if err != nil {
		return nil, fmt.Errorf("netlink RTM_GETLINK: %w", err)
	}
	msgs, err := syscall.ParseNetlinkMessage(b)
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	out := map[string]Link{}
	for i := range msgs {
		m := &msgs[i]
		if m.Header.Type == syscall.NLMSG_DONE {
			break
		}
		if m.Header.Type != syscall.RTM_NEWLINK || len(m.Data) < syscall.SizeofIfInfomsg {
			continue
		}
		// struct ifinfomsg: family u8, pad u8, type u16, index s32, flags u32, change u32.
		link := Link{Index: int(int32(binary.NativeEndian.Uint32(m.Data[4:8])))}
		attrs, err := syscall.ParseNetlinkRouteAttr(m)
		if err != nil {
			return nil, fmt.Errorf("netlink link attributes: %w", err)
		}
		name := ""
		for _, a := range attrs {
			switch a.Attr.Type & nlaTypeMask {
			case syscall.IFLA_IFNAME:
				name = strings.TrimRight(string(a.Value), "\x00")
			case iflaLinkInfo:
				link.Kind = nestedString(a.Value, iflaInfoKind)
			}
		}
		if name != "" {
			out[name] = link
		}
	}
	return out, nil
}

// nestedString: the string attribute of type t among the netlink attributes in b.
func nestedString(b []byte, t uint16) string {
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b[0:2]))
		typ := binary.NativeEndian.Uint16(b[2:4]) & nlaTypeMask
		if l < 4 || l > len(b) {
			return ""
		}
		if typ == t {
			return strings.TrimRight(string(b[4:l]), "\x00")
		}
		next := (l + 3) &^ 3
		if next >= len(b) {
			return ""
		}
		b = b[next:]
	}
	return ""
}
