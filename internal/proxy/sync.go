package proxy

import (
	"fmt"
	"maps"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// TableName is the one nftables table skiff owns.
const TableName = "skiff"

// Conn is the part of *nftables.Conn the Syncer uses.
type Conn interface {
	AddTable(*nftables.Table) *nftables.Table
	DelTable(*nftables.Table)
	ListTableOfFamily(name string, family nftables.TableFamily) (*nftables.Table, error)
	AddChain(*nftables.Chain) *nftables.Chain
	DelChain(*nftables.Chain)
	FlushChain(*nftables.Chain)
	AddRule(*nftables.Rule) *nftables.Rule
	AddSet(*nftables.Set, []nftables.SetElement) error
	SetAddElements(*nftables.Set, []nftables.SetElement) error
	SetDeleteElements(*nftables.Set, []nftables.SetElement) error
	Flush() error
}

var _ Conn = (*nftables.Conn)(nil)

var (
	keyVIP      = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)
	keyNodePort = nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeInetService)
)

type baseChain struct {
	name     string
	typ      nftables.ChainType
	hook     *nftables.ChainHook
	priority int32
	rules    []Rule
}

// staticChains are the chains whose content never depends on services.
var staticChains = []baseChain{
	{name: "services", rules: []Rule{{Op: OpLookupVIP, Target: MapServiceIPs}, {Op: OpLookupNodePort, Target: MapServiceNodePorts}}},
	{name: "filter-services", rules: []Rule{{Op: OpLookupVIP, Target: MapNoEndpointServices}, {Op: OpLookupNodePort, Target: MapNoEndpointNodePorts}}},
	{name: chainRejectName, rules: []Rule{{Op: OpRejectTCP}, {Op: OpReject}}},
	{name: chainMarkMasq, rules: []Rule{{Op: OpSetMark}}},
	{name: "masquerading", rules: []Rule{{Op: OpReturnUnmarked}, {Op: OpClearMark}, {Op: OpMasquerade}}},
	{name: "nat-prerouting", typ: nftables.ChainTypeNAT, hook: nftables.ChainHookPrerouting, priority: -100, rules: []Rule{{Op: OpJump, Target: "services"}}},
	{name: "nat-output", typ: nftables.ChainTypeNAT, hook: nftables.ChainHookOutput, priority: -100, rules: []Rule{{Op: OpJump, Target: "services"}}},
	{name: "nat-postrouting", typ: nftables.ChainTypeNAT, hook: nftables.ChainHookPostrouting, priority: 100, rules: []Rule{{Op: OpJump, Target: "masquerading"}}},
	{name: "filter-input", typ: nftables.ChainTypeFilter, hook: nftables.ChainHookInput, priority: -110, rules: []Rule{{Op: OpJump, Target: "filter-services"}}},
	{name: "filter-forward", typ: nftables.ChainTypeFilter, hook: nftables.ChainHookForward, priority: -110, rules: []Rule{{Op: OpJump, Target: "filter-services"}}},
	{name: "filter-output", typ: nftables.ChainTypeFilter, hook: nftables.ChainHookOutput, priority: -110, rules: []Rule{{Op: OpJump, Target: "filter-services"}}},
}

// Syncer applies Rulesets to the kernel. It remembers what it applied last so
// that Apply changes only what differs. Not safe for concurrent use.
type Syncer struct {
	opts    Options
	table   *nftables.Table
	sets    map[string]*nftables.Set
	applied *Ruleset
}

// NewSyncer returns a Syncer for the table "skiff" (family ip).
func NewSyncer(opts Options) *Syncer {
	return &Syncer{opts: opts, table: &nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv4}}
}

// Check reports whether the kernel's table still holds what the Syncer
// applied last (false = drift: call FullSync). TODO: compare chains and map
// elements, not only the table's presence.
func (s *Syncer) Check(conn Conn) (bool, error) {
	if s.applied == nil {
		return false, nil
	}
	if _, err := conn.ListTableOfFamily(TableName, s.table.Family); err != nil {
		return false, nil
	}
	return true, nil
}

// Table returns the table the Syncer owns.
func (s *Syncer) Table() *nftables.Table { return s.table }

func (s *Syncer) chain(name string) *nftables.Chain {
	return &nftables.Chain{Name: name, Table: s.table}
}

// Apply makes the kernel's table match desired in one batch. The first call,
// and any call after a failed one or when the table has gone (drift), rebuilds
// the table with FullSync; otherwise only changed map elements and chains are
// touched: chains of unchanged services keep their handles.
//
// Drift is detected only as a missing table; call FullSync to repair other
// drift. An error before the batch is sent leaves messages queued on conn
// (the library cannot discard them): use a fresh Conn after an error.
func (s *Syncer) Apply(conn Conn, desired *Ruleset) error {
	if s.applied == nil {
		return s.FullSync(conn, desired)
	}
	if _, err := conn.ListTableOfFamily(TableName, s.table.Family); err != nil {
		return s.FullSync(conn, desired)
	}
	old := s.applied
	s.applied = nil // until the batch succeeds

	var added, changed, removed []string
	for name, c := range desired.Chains {
		if o, ok := old.Chains[name]; !ok {
			added = append(added, name)
		} else if !chainsEqual(o, c) {
			changed = append(changed, name)
		}
	}
	for name := range old.Chains {
		if _, ok := desired.Chains[name]; !ok {
			removed = append(removed, name)
		}
	}
	// 1. new chains exist before anything refers to them.
	for _, n := range added {
		conn.AddChain(s.chain(n))
	}
	// 2. stale and changed map elements go.
	for name, set := range s.sets {
		var del []nftables.SetElement
		for k, v := range old.Maps[name] {
			if nv, ok := desired.Maps[name][k]; !ok || nv != v {
				del = append(del, nftables.SetElement{Key: mapKeyBytes(k)})
			}
		}
		for len(del) > 0 {
			n := min(len(del), elementsPerMessage)
			if err := conn.SetDeleteElements(set, del[:n]); err != nil {
				return fmt.Errorf("proxy: map %s: %w", name, err)
			}
			del = del[n:]
		}
	}
	// 3. changed and removed chains are emptied (dropping their jumps).
	for _, n := range append(append([]string(nil), changed...), removed...) {
		conn.FlushChain(s.chain(n))
	}
	// 4. rules of new and changed chains.
	for _, n := range append(append([]string(nil), added...), changed...) {
		if err := s.addRules(conn, n, desired.Chains[n].Rules); err != nil {
			return err
		}
	}
	// 5. new and changed map elements.
	for name, set := range s.sets {
		var add []nftables.SetElement
		for k, v := range desired.Maps[name] {
			if ov, ok := old.Maps[name][k]; !ok || ov != v {
				add = append(add, element(k, v))
			}
		}
		if err := addElements(conn, set, add); err != nil {
			return err
		}
	}
	// 6. removed chains go, now that nothing refers to them.
	for _, n := range removed {
		conn.DelChain(s.chain(n))
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("proxy: apply: %w", err)
	}
	s.applied = desired
	return nil
}

// FullSync rebuilds the table from scratch in one batch (on start, and to
// repair drift): whatever the table held is replaced atomically.
func (s *Syncer) FullSync(conn Conn, desired *Ruleset) error {
	s.applied = nil
	t := s.table
	// Replace an existing table within the same batch (atomic for packets).
	if _, err := conn.ListTableOfFamily(t.Name, t.Family); err == nil {
		conn.DelTable(t)
	}
	conn.AddTable(t)
	for _, c := range staticChains {
		ch := s.chain(c.name)
		if c.hook != nil {
			ch.Type, ch.Hooknum, ch.Priority = c.typ, c.hook, nftables.ChainPriorityRef(nftables.ChainPriority(c.priority))
		}
		conn.AddChain(ch)
	}
	names := slices.Sorted(maps.Keys(desired.Chains)) // a deterministic batch
	for _, name := range names {
		conn.AddChain(s.chain(name))
	}
	s.sets = map[string]*nftables.Set{}
	for _, m := range []struct {
		name string
		key  nftables.SetDatatype
	}{{MapServiceIPs, keyVIP}, {MapServiceNodePorts, keyNodePort}, {MapNoEndpointServices, keyVIP}, {MapNoEndpointNodePorts, keyNodePort}} {
		set := &nftables.Set{Table: t, ID: nextSetID(), Name: m.name, IsMap: true, Concatenation: true, KeyType: m.key, DataType: nftables.TypeVerdict}
		var elems []nftables.SetElement
		for k, v := range desired.Maps[m.name] {
			elems = append(elems, element(k, v))
		}
		if err := conn.AddSet(set, nil); err != nil {
			return fmt.Errorf("proxy: map %s: %w", m.name, err)
		}
		if err := addElements(conn, set, elems); err != nil {
			return err
		}
		s.sets[m.name] = set
	}
	for _, c := range staticChains {
		if err := s.addRules(conn, c.name, c.rules); err != nil {
			return err
		}
	}
	for _, name := range names {
		if err := s.addRules(conn, name, desired.Chains[name].Rules); err != nil {
			return err
		}
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("proxy: full sync: %w", err)
	}
	s.applied = desired
	return nil
}

// Delete removes the table (uninstall). It is not an error if there is none.
func (s *Syncer) Delete(conn Conn) error {
	s.applied = nil
	conn.AddTable(s.table)
	conn.DelTable(s.table)
	return conn.Flush()
}

func (s *Syncer) addRules(conn Conn, chain string, rules []Rule) error {
	for _, r := range rules {
		ex, err := r.exprs(conn, s.table, s.sets)
		if err != nil {
			return fmt.Errorf("proxy: chain %s: %w", chain, err)
		}
		conn.AddRule(&nftables.Rule{Table: s.table, Chain: s.chain(chain), Exprs: ex})
	}
	return nil
}

// elementsPerMessage bounds the elements of one NEWSETELEM message: the
// element list is one netlink attribute, whose length is 16 bits. The
// library does not split, and past 64 KiB (about 1,000 services) the length
// wraps: the kernel then silently keeps a prefix of the elements or fails
// the batch with ENOENT, depending on where the cut falls.
const elementsPerMessage = 128

func addElements(conn Conn, set *nftables.Set, elems []nftables.SetElement) error {
	for len(elems) > 0 {
		n := min(len(elems), elementsPerMessage)
		if err := conn.SetAddElements(set, elems[:n]); err != nil {
			return fmt.Errorf("proxy: map %s: %w", set.Name, err)
		}
		elems = elems[n:]
	}
	return nil
}

func element(k MapKey, chain string) nftables.SetElement {
	return nftables.SetElement{Key: mapKeyBytes(k), VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: chain}}
}
