package proxy

import (
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Op is the kind of a Rule.
type Op int

// Rule kinds. A Rule is data so that desired and applied chains compare by value.
const (
	OpJump           Op = iota // jump Target
	OpGoto                     // goto Target
	OpNumgenGoto               // numgen random mod Mod == 0 goto Target
	OpSaddrMarkMasq            // ip saddr Addr jump mark-for-masquerade
	OpDNAT                     // meta l4proto Proto dnat to Addr:Port
	OpLookupVIP                // ip daddr . meta l4proto . th dport vmap @Target
	OpLookupNodePort           // fib daddr type local meta l4proto . th dport vmap @Target
	OpSetMark                  // meta mark set meta mark | 0x4000
	OpReturnUnmarked           // meta mark & 0x4000 == 0 return
	OpClearMark                // meta mark set meta mark ^ 0x4000
	OpMasquerade               // masquerade fully-random
	OpRejectTCP                // meta l4proto tcp reject with tcp reset
	OpReject                   // reject (icmp port-unreachable)

	OpNotFromPrefixMarkMasq // ip daddr Addr meta l4proto Proto th dport Port ip saddr != Prefix jump mark-for-masquerade
	OpFromPrefixGoto        // ip saddr Prefix goto Target
	OpFibSaddrLocalMarkMasq // fib saddr type local jump mark-for-masquerade
	OpFibSaddrLocalGoto     // fib saddr type local goto Target
	OpAffinityGoto          // ip saddr @Set goto Target
	OpAffinityUpdate        // update @Set { ip saddr }
	OpEgressReturn          // ip saddr Prefix ip daddr Prefix return
	OpEgressMasquerade      // ip saddr Prefix ip daddr != 224.0.0.0/4 masquerade fully-random
)

// Rule is one rule of a chain.
type Rule struct {
	Op     Op
	Target string // chain or map name
	Mod    uint32 // numgen modulus
	Set    string // affinity set name
	Addr   netip.Addr
	Prefix netip.Prefix
	Port   uint16
	Proto  uint8
}

func (r Rule) String() string {
	switch r.Op {
	case OpJump:
		return "jump " + r.Target
	case OpGoto:
		return "goto " + r.Target
	case OpNumgenGoto:
		return fmt.Sprintf("numgen random mod %d == 0 goto %s", r.Mod, r.Target)
	case OpSaddrMarkMasq:
		return fmt.Sprintf("ip saddr %s jump %s", r.Addr, chainMarkMasq)
	case OpDNAT:
		return fmt.Sprintf("meta l4proto %s dnat to %s:%d", protoName(r.Proto), r.Addr, r.Port)
	case OpLookupVIP:
		return "ip daddr . meta l4proto . th dport vmap @" + r.Target
	case OpLookupNodePort:
		return "fib daddr type local meta l4proto . th dport vmap @" + r.Target
	case OpSetMark:
		return fmt.Sprintf("meta mark set meta mark | %#x", MasqueradeMark)
	case OpReturnUnmarked:
		return fmt.Sprintf("meta mark & %#x == 0 return", MasqueradeMark)
	case OpClearMark:
		return fmt.Sprintf("meta mark set meta mark ^ %#x", MasqueradeMark)
	case OpMasquerade:
		return "masquerade fully-random"
	case OpRejectTCP:
		return "meta l4proto tcp reject with tcp reset"
	case OpReject:
		return "reject"
	case OpNotFromPrefixMarkMasq:
		return fmt.Sprintf("ip daddr %s meta l4proto %s th dport %d ip saddr != %s jump %s", r.Addr, protoName(r.Proto), r.Port, r.Prefix, chainMarkMasq)
	case OpFromPrefixGoto:
		return fmt.Sprintf("ip saddr %s goto %s", r.Prefix, r.Target)
	case OpFibSaddrLocalMarkMasq:
		return "fib saddr type local jump " + chainMarkMasq
	case OpFibSaddrLocalGoto:
		return "fib saddr type local goto " + r.Target
	case OpAffinityGoto:
		return fmt.Sprintf("ip saddr @%s goto %s", r.Set, r.Target)
	case OpAffinityUpdate:
		return fmt.Sprintf("update @%s { ip saddr }", r.Set)
	case OpEgressReturn:
		return fmt.Sprintf("ip saddr %s ip daddr %s return", r.Prefix, r.Prefix)
	case OpEgressMasquerade:
		return fmt.Sprintf("ip saddr %s ip daddr != %s masquerade fully-random", r.Prefix, multicast)
	}
	return fmt.Sprintf("op(%d)", int(r.Op))
}

func chainsEqual(x, y Chain) bool {
	if x.sig != "" && y.sig != "" {
		return x.sig == y.sig
	}
	a, b := x.Rules, y.Rules
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].String() != b[i].String() {
			return false
		}
	}
	return true
}

// exprs builds the rule's expressions. Anonymous sets the rule needs are
// added to the batch through conn first.
func (r Rule) exprs(conn Conn, t *nftables.Table, sets func(string) *nftables.Set) ([]expr.Any, error) {
	switch r.Op {
	case OpJump, OpGoto:
		kind := expr.VerdictJump
		if r.Op == OpGoto {
			kind = expr.VerdictGoto
		}
		return []expr.Any{&expr.Verdict{Kind: kind, Chain: r.Target}}, nil
	case OpNumgenGoto:
		// numgen writes a host-endian u32 (PLATFORM.md); 0 reads the same.
		return []expr.Any{
			&expr.Numgen{Register: 1, Modulus: r.Mod, Type: unix.NFT_NG_RANDOM},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0, 0, 0, 0}},
			&expr.Verdict{Kind: expr.VerdictGoto, Chain: r.Target},
		}, nil
	case OpSaddrMarkMasq:
		a := r.Addr.As4()
		return []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a[:]},
			&expr.Verdict{Kind: expr.VerdictJump, Chain: chainMarkMasq},
		}, nil
	case OpDNAT:
		a := r.Addr.As4()
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{r.Proto}},
			&expr.Immediate{Register: 1, Data: a[:]},
			&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(r.Port)},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
		}, nil
	case OpLookupVIP, OpLookupNodePort:
		set := sets(r.Target)
		if set == nil {
			return nil, fmt.Errorf("proxy: unknown map %q", r.Target)
		}
		// Concatenated keys live in consecutive 32-bit registers: reg 1 is
		// reg32 8, followed by 9 and 10 (as nft itself emits them).
		var ex []expr.Any
		protoReg, portReg := uint32(9), uint32(10)
		if r.Op == OpLookupNodePort {
			ex = append(ex,
				&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)})
			protoReg, portReg = 1, 9
		} else {
			ex = append(ex, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4})
		}
		ex = append(ex,
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: protoReg},
			&expr.Payload{DestRegister: portReg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Lookup{SourceRegister: 1, DestRegister: 0, IsDestRegSet: true, SetName: set.Name, SetID: set.ID})
		return ex, nil
	case OpSetMark, OpClearMark:
		mask, xor := ^uint32(MasqueradeMark), uint32(MasqueradeMark)
		if r.Op == OpClearMark {
			mask = ^uint32(0)
		}
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(mask), Xor: binaryutil.NativeEndian.PutUint32(xor)},
			&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
		}, nil
	case OpReturnUnmarked:
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(MasqueradeMark), Xor: binaryutil.NativeEndian.PutUint32(0)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
			&expr.Verdict{Kind: expr.VerdictReturn},
		}, nil
	case OpMasquerade:
		return []expr.Any{&expr.Masq{FullyRandom: true}}, nil
	case OpRejectTCP:
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{ProtoTCP}},
			&expr.Reject{Type: unix.NFT_REJECT_TCP_RST},
		}, nil
	case OpReject:
		return []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: 3}}, nil // port-unreachable
	case OpNotFromPrefixMarkMasq:
		a := r.Addr.As4()
		ex := []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a[:]},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{r.Proto}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(r.Port)},
		}
		ex = append(ex, prefixMatch(12, r.Prefix, expr.CmpOpNeq)...)
		return append(ex, &expr.Verdict{Kind: expr.VerdictJump, Chain: chainMarkMasq}), nil
	case OpFromPrefixGoto:
		return append(prefixMatch(12, r.Prefix, expr.CmpOpEq), &expr.Verdict{Kind: expr.VerdictGoto, Chain: r.Target}), nil
	case OpFibSaddrLocalMarkMasq, OpFibSaddrLocalGoto:
		v := &expr.Verdict{Kind: expr.VerdictJump, Chain: chainMarkMasq}
		if r.Op == OpFibSaddrLocalGoto {
			v = &expr.Verdict{Kind: expr.VerdictGoto, Chain: r.Target}
		}
		return []expr.Any{
			&expr.Fib{Register: 1, FlagSADDR: true, ResultADDRTYPE: true},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
			v,
		}, nil
	case OpAffinityGoto, OpAffinityUpdate:
		set := sets(r.Set)
		if set == nil {
			return nil, fmt.Errorf("proxy: unknown set %q", r.Set)
		}
		ex := []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4}}
		if r.Op == OpAffinityUpdate {
			return append(ex, &expr.Dynset{SrcRegKey: 1, SetName: set.Name, SetID: set.ID, Operation: uint32(unix.NFT_DYNSET_OP_UPDATE)}), nil
		}
		return append(ex,
			&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID},
			&expr.Verdict{Kind: expr.VerdictGoto, Chain: r.Target}), nil
	case OpEgressReturn:
		ex := append(prefixMatch(12, r.Prefix, expr.CmpOpEq), prefixMatch(16, r.Prefix, expr.CmpOpEq)...)
		return append(ex, &expr.Verdict{Kind: expr.VerdictReturn}), nil
	case OpEgressMasquerade:
		ex := append(prefixMatch(12, r.Prefix, expr.CmpOpEq), prefixMatch(16, multicast, expr.CmpOpNeq)...)
		return append(ex, &expr.Masq{FullyRandom: true}), nil
	}
	return nil, fmt.Errorf("proxy: unknown rule op %d", r.Op)
}

var multicast = netip.MustParsePrefix("224.0.0.0/4")

// prefixMatch compares the IPv4 address at offset (12 saddr, 16 daddr) of
// the network header with an IPv4 prefix.
func prefixMatch(offset uint32, p netip.Prefix, op expr.CmpOp) []expr.Any {
	p = p.Masked()
	a := p.Addr().As4()
	mask := net.CIDRMask(p.Bits(), 32)
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: op, Register: 1, Data: a[:]},
	}
}

var setIDs atomic.Uint32

// nextSetID allocates set IDs (and anonymous set names) for this process,
// above the range the library's own counter uses.
func nextSetID() uint32 { return 1<<31 | setIDs.Add(1) }

// mapKeyBytes encodes a key of a concatenated map: every field padded to 4 bytes.
func mapKeyBytes(k MapKey) []byte {
	var b []byte
	if k.Addr.IsValid() {
		a := k.Addr.As4()
		b = append(b, a[:]...)
	}
	b = append(b, k.Proto, 0, 0, 0)
	b = append(b, byte(k.Port>>8), byte(k.Port), 0, 0)
	return b
}
