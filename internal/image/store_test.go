package image

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func snapshotCount(t *testing.T, s *Store) int {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(s.root, "snapshots", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestSharedLayersStoredOnce(t *testing.T) {
	host := testRegistry(t, nil)
	base := busyboxLayer(t)
	a := imageOf(t, []string{"a"}, base, layerOf(t, file("a", "a")))
	b := imageOf(t, []string{"b"}, base, layerOf(t, file("b", "b")))
	push(t, host+"/a:1", a)
	push(t, host+"/b:1", b)
	s := openStore(t, Options{InsecureRegistries: []string{host}})
	ctx := ctxT(t)
	ia, err := s.Pull(ctx, host+"/a:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	ib, err := s.Pull(ctx, host+"/b:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := snapshotCount(t, s); n != 3 {
		t.Errorf("%d snapshots, want 3 (one shared)", n)
	}
	da, _ := s.LowerDirs(ia)
	db, _ := s.LowerDirs(ib)
	if da[1] != db[1] || da[0] == db[0] {
		t.Errorf("lowerdirs a=%v b=%v: want the same bottom layer", da, db)
	}
	if ib.Layers[0].Size == 0 {
		t.Error("size of the shared layer unknown to the second image")
	}
	st, err := s.Stats()
	if err != nil || st.Images != 2 || st.Layers != 3 || st.LayerBytes != ia.Size()+ib.Layers[1].Size || st.FsTotalBytes == 0 {
		t.Errorf("Stats = %+v, %v", st, err)
	}
}

// fakeDisk makes the filesystem look full until enough images are gone.
func fakeDisk(s *Store, usedPct func() int) {
	s.statfs = func(string) (uint64, uint64, error) { return uint64(usedPct()), 100, nil }
}

func TestRemoveAndGC(t *testing.T) {
	host := testRegistry(t, nil)
	base := busyboxLayer(t)
	imgs := map[string]string{}
	s := openStore(t, Options{InsecureRegistries: []string{host}})
	ctx := ctxT(t)
	for _, n := range []string{"old", "mid", "new", "busy"} {
		push(t, host+"/"+n+":1", imageOf(t, []string{n}, base, layerOf(t, file(n, n))))
		img, err := s.Pull(ctx, host+"/"+n+":1", nil)
		if err != nil {
			t.Fatal(err)
		}
		imgs[n] = img.ID
	}
	// "busy" is the least recently used but a container runs it.
	s.mu.Lock()
	s.images[imgs["busy"]].LastUsed = s.images[imgs["old"]].LastUsed.Add(-1)
	s.mu.Unlock()
	inUse := map[string]bool{imgs["busy"]: true}

	if err := s.Remove(host+"/busy:1", inUse); !errors.Is(err, ErrInUse) {
		t.Fatalf("Remove of an image in use: %v", err)
	}
	if err := s.Remove(host+"/nope:1", inUse); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Remove of a missing image: %v", err)
	}

	// Below the high threshold nothing goes.
	fakeDisk(s, func() int { return 84 })
	res, err := s.GC(ctx, inUse)
	if err != nil || len(res.Images) != 0 {
		t.Fatalf("GC at 84%%: %+v %v", res, err)
	}
	// At 90%, each image removed frees 6%: old and mid go (→ 78% < 80%).
	fakeDisk(s, func() int { return 90 - 6*(4-len(s.List())) })
	res, err = s.GC(ctx, inUse)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Images) != 2 || res.Images[0] != imgs["old"] || res.Images[1] != imgs["mid"] {
		t.Errorf("GC removed %v, want old then mid (%s %s)", res.Images, imgs["old"], imgs["mid"])
	}
	if res.UsagePercent != 78 || res.Snapshots != 2 {
		t.Errorf("GC result %+v", res)
	}
	for _, n := range []string{"new", "busy"} {
		if _, err := s.Get(host + "/" + n + ":1"); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
	if n := snapshotCount(t, s); n != 3 {
		t.Errorf("%d snapshots left, want 3 (base, new, busy)", n)
	}

	if err := s.Remove(host+"/new:1", inUse); err != nil {
		t.Fatal(err)
	}
	if n := snapshotCount(t, s); n != 2 {
		t.Errorf("%d snapshots after Remove, want 2", n)
	}
	// Prune keeps only what is in use; then nothing in use → empty store.
	if _, err := s.Prune(ctx, inUse); err != nil || len(s.List()) != 1 {
		t.Fatalf("Prune: %v, %d images", err, len(s.List()))
	}
	if _, err := s.Prune(ctx, nil); err != nil || len(s.List()) != 0 {
		t.Fatalf("Prune: %v, %d images", err, len(s.List()))
	}
	ents, _ := os.ReadDir(filepath.Join(s.root, "blobs", "sha256"))
	if n := snapshotCount(t, s); n != 0 || len(ents) != 0 {
		t.Errorf("after prune: %d snapshots, %d blobs", n, len(ents))
	}
}

// TestGCDuringPulls races GC against pulls: a pull's layers are pinned, so
// no image ends up recorded with a missing snapshot.
func TestGCDuringPulls(t *testing.T) {
	host := testRegistry(t, nil)
	base := busyboxLayer(t)
	for _, n := range []string{"p1", "p2", "p3"} {
		push(t, host+"/"+n+":1", imageOf(t, []string{n}, base, layerOf(t, file(n, n))))
	}
	s := openStore(t, Options{InsecureRegistries: []string{host}})
	ctx := ctxT(t)
	var wg sync.WaitGroup
	for _, n := range []string{"p1", "p2", "p3"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Pull(ctx, host+"/"+n+":1", nil); err != nil {
				t.Error(err)
			}
		}()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 50 {
			if _, err := s.Prune(ctx, nil); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	wg.Wait()
	<-done
	for _, img := range s.List() {
		if _, err := s.LowerDirs(img); err != nil {
			t.Errorf("image %v recorded without its layers: %v", img.RepoTags, err)
		}
	}
}
