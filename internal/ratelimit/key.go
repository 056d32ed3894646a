package ratelimit

import "net/netip"

// AddrKey is the caller key for an anonymous client address: "ip:" and the
// IPv4 address, or the IPv6 /64 prefix the address is in. One IPv6 subscriber
// commonly holds a whole /64, so keying by the full address would give one
// client 2^64 budgets. An IPv4-mapped IPv6 address counts as its IPv4 address.
func AddrKey(a netip.Addr) string {
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		return "ip:" + p.String()
	}
	return "ip:" + a.String()
}
