package imagesapi

import (
	"context"
	"log/slog"
	"time"

	"github.com/skiff-dev/skiff/internal/image"
	"github.com/skiff-dev/skiff/internal/runtime"
)

// DefaultGCInterval is the kubelet's ImageGCPeriod.
const DefaultGCInterval = 5 * time.Minute

// RunGC runs store.GC now and then every interval (<= 0: DefaultGCInterval)
// until ctx ends, as the kubelet's image GC does: when the image filesystem
// is at the store's high threshold (image.Options.HighThresholdPercent,
// default 85%), images no container uses are removed, least recently used
// first, until usage is below the low threshold (default 80%). A round whose
// inUse fails is skipped: removing images of containers we could not list
// would break them.
func RunGC(ctx context.Context, store *image.Store, inUse func() (map[string]bool, error), interval time.Duration, logger *slog.Logger) {
	if interval <= 0 {
		interval = DefaultGCInterval
	}
	if logger == nil {
		logger = slog.Default()
	}
	log := logger.With("component", "image-gc")
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		gcOnce(ctx, store, inUse, log)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func gcOnce(ctx context.Context, store *image.Store, inUseFn func() (map[string]bool, error), log *slog.Logger) {
	var inUse map[string]bool
	if inUseFn != nil {
		var err error
		if inUse, err = inUseFn(); err != nil {
			log.Warn("image garbage collection skipped: cannot list the images containers use", "err", err)
			return
		}
	}
	res, err := store.GC(ctx, inUse)
	if err != nil {
		if ctx.Err() == nil {
			log.Warn("image garbage collection failed", "err", err, "usagePercent", res.UsagePercent)
		}
		return
	}
	if len(res.Images) > 0 || res.Snapshots > 0 || res.Blobs > 0 {
		log.Info("image garbage collection freed space", "images", res.Images, "snapshots", res.Snapshots,
			"blobs", res.Blobs, "bytesFreed", res.BytesFreed, "usagePercent", res.UsagePercent)
	} else {
		log.Debug("image garbage collection: nothing to free", "usagePercent", res.UsagePercent)
	}
}

// ContainerLister is what InUseFunc needs of the runtime (*runtime.Runtime).
type ContainerLister interface {
	List() ([]*runtime.State, error)
}

// InUseFunc returns the IDs of the images of every container the runtime
// has, running or exited (their label LabelImageID), as the kubelet counts
// images in use.
func InUseFunc(rt ContainerLister) func() (map[string]bool, error) {
	return func() (map[string]bool, error) {
		cs, err := rt.List()
		if err != nil {
			return nil, err
		}
		return ImagesInUse(cs), nil
	}
}

// ImagesInUse are the image IDs (label LabelImageID) of the containers.
func ImagesInUse(cs []*runtime.State) map[string]bool {
	m := map[string]bool{}
	for _, c := range cs {
		if id := c.Labels[LabelImageID]; id != "" {
			m[id] = true
		}
	}
	return m
}
