package scheduler

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
)

// ErrNoNodesAvailable is upstream's error for a cluster without nodes; its
// text becomes the pod's condition message and event.
var ErrNoNodesAvailable = errors.New("no nodes available to schedule pods")

// FitError says why a pod fits on none of the nodes: how many nodes gave
// each reason.
type FitError struct {
	NumAllNodes int
	Reasons     map[string]int
}

// Error words the failure as kube-scheduler's FitError does, e.g.
// "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match
// Pod's node affinity/selector." — "<count> <reason>" entries sorted as
// strings. Without preemption there is no "preemption:" suffix.
func (e *FitError) Error() string {
	msg := fmt.Sprintf("0/%v nodes are available:", e.NumAllNodes)
	hist := make([]string, 0, len(e.Reasons))
	for r, n := range e.Reasons {
		hist = append(hist, fmt.Sprintf("%v %v", n, r))
	}
	sort.Strings(hist)
	if len(hist) > 0 {
		msg += fmt.Sprintf(" %v.", strings.Join(hist, ", "))
	}
	return msg
}

// minFeasibleNodesToFind and minFeasibleNodesPercentageToFind are
// kube-scheduler's floors for the adaptive node sampling.
const (
	minFeasibleNodesToFind           = 100
	minFeasibleNodesPercentageToFind = 5
)

// numFeasibleNodesToFind is how many feasible nodes a decision looks for
// before it stops filtering: all of a small cluster, and in a large one a
// share that shrinks with its size (50% - nodes/125, at least 5% and 100
// nodes) unless percentage (1..100) is set.
func numFeasibleNodesToFind(percentage int32, numAll int) int {
	if numAll < minFeasibleNodesToFind || percentage >= 100 {
		return numAll
	}
	if percentage <= 0 {
		percentage = int32(50 - numAll/125)
		if percentage < minFeasibleNodesPercentageToFind {
			percentage = minFeasibleNodesPercentageToFind
		}
	}
	n := numAll * int(percentage) / 100
	if n < minFeasibleNodesToFind {
		return minFeasibleNodesToFind
	}
	return n
}

// Decision is the outcome of one successful scheduling decision.
type Decision struct {
	Node string
	// Evaluated and Feasible count the nodes filtered and those that
	// passed.
	Evaluated, Feasible int
}

// Scheduler state a decision reads and advances: where the next search
// starts (so that sampling rotates over the cluster) and the tie breaker.
type decisionState struct {
	start      int
	percentage int32
	rnd        *rand.Rand
}

// schedule picks a node for p from snap, or returns a *FitError or
// ErrNoNodesAvailable. It reads snap only; st.start advances.
func schedule(p *PodInfo, snap Snapshot, st *decisionState) (Decision, error) {
	all := len(snap.Nodes)
	if all == 0 {
		return Decision{}, ErrNoNodesAvailable
	}
	want := numFeasibleNodesToFind(st.percentage, all)
	feasible := make([]*NodeInfo, 0, min(want, 128))
	var reasons map[string]int
	start := st.start % all
	evaluated := 0
	for ; evaluated < all && len(feasible) < want; evaluated++ {
		n := snap.Nodes[(start+evaluated)%all]
		if r := runFilters(p, n); r != nil {
			if reasons == nil {
				reasons = map[string]int{}
			}
			for _, x := range r {
				reasons[x]++
			}
			continue
		}
		feasible = append(feasible, n)
	}
	st.start = (start + evaluated) % all
	if len(feasible) == 0 {
		return Decision{}, &FitError{NumAllNodes: all, Reasons: reasons}
	}
	d := Decision{Evaluated: evaluated, Feasible: len(feasible)}
	if len(feasible) == 1 {
		d.Node = feasible[0].Node.Name
		return d, nil
	}
	scores := scoreNodes(p, feasible)
	d.Node = selectHost(feasible, scores, st.rnd)
	return d, nil
}

// selectHost returns the highest-scoring node, choosing uniformly among
// ties (reservoir sampling, as upstream).
func selectHost(nodes []*NodeInfo, scores []int64, rnd *rand.Rand) string {
	best, ties := 0, 1
	for i := 1; i < len(nodes); i++ {
		switch {
		case scores[i] > scores[best]:
			best, ties = i, 1
		case scores[i] == scores[best]:
			ties++
			if rnd.IntN(ties) == 0 {
				best = i
			}
		}
	}
	return nodes[best].Node.Name
}
