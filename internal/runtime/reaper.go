package runtime

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// SetChildSubreaper makes this process the reaper of its orphaned
// descendants (prctl PR_SET_CHILD_SUBREAPER), as the agent should be.
func SetChildSubreaper() error {
	return unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
}

// ReapOrphans reaps zombie children that nobody waits for, until ctx ends.
// Processes this program started itself (container inits, exec processes,
// os/exec commands) are reaped by their own waiters, which are blocked in
// wait and collect them at once; so a zombie is only reaped here when it is
// still a zombie one scan (≥ 1 s) after it was first seen — an orphan
// reparented to the subreaper. Scans run every second, not on SIGCHLD:
// starting a burst of containers raises hundreds of SIGCHLDs, each of which
// would rescan every thread's children for nothing (a zombie must survive a
// whole scan interval before it is reaped anyway).
func ReapOrphans(ctx context.Context, logger *slog.Logger) {
	if logger == nil {
		logger = slog.Default()
	}
	log := logger.With("component", "runtime")
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	seen := map[int]time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		zombies := map[int]bool{}
		for _, pid := range zombieChildren() {
			zombies[pid] = true
			first, ok := seen[pid]
			if !ok {
				seen[pid] = now
				continue
			}
			if now.Sub(first) < time.Second {
				continue
			}
			var ws unix.WaitStatus
			if got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil); err == nil && got == pid {
				log.Debug("reaped orphan", "pid", pid, "status", ws.ExitStatus())
			}
			delete(seen, pid)
		}
		for pid := range seen {
			if !zombies[pid] {
				delete(seen, pid)
			}
		}
	}
}

// zombieChildren lists this process's children in state Z.
func zombieChildren() []int {
	tasks, _ := filepath.Glob("/proc/self/task/*/children")
	var out []int
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			pid, err := strconv.Atoi(f)
			if err != nil {
				continue
			}
			stat, err := os.ReadFile("/proc/" + f + "/stat")
			if err != nil {
				continue
			}
			// pid (comm) S …: the state follows the last ')'.
			s := string(stat)
			if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) && s[i+2] == 'Z' {
				out = append(out, pid)
			}
		}
	}
	return out
}
