package image

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sync/errgroup"
)

// Ensure applies an imagePullPolicy (empty: Kubernetes' default for ref):
// it returns the stored image when the policy allows, and pulls otherwise.
// The image is marked used. With PullNever and no image the error wraps
// ErrNeverPull (Kubernetes' ErrImageNeverPull); other errors are pull errors
// (ErrImagePull) whose text carries the registry's message.
func (s *Store) Ensure(ctx context.Context, ref string, policy PullPolicy, keychain authn.Keychain) (*Image, error) {
	img, err := s.Get(ref)
	present := err == nil
	pull, err := ShouldPull(policy, ref, present)
	if err != nil {
		return nil, err
	}
	if !pull {
		s.MarkUsed(img.ID)
		img.LastUsed = time.Now().UTC()
		return img, nil
	}
	return s.Pull(ctx, ref, keychain)
}

// Pull fetches ref (normalised as Kubernetes does) for the store's platform
// and unpacks its layers. keychain may be nil (anonymous); see
// KeychainFromSecrets. Concurrent pulls of one reference share the work, and
// so do concurrent unpacks of one layer.
func (s *Store) Pull(ctx context.Context, ref string, keychain authn.Keychain) (*Image, error) {
	r, err := ParseReference(ref)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("pull %s: %w", r, err)
	}
	// Key on the credentials too: a caller without access must not get an
	// image another caller's secret fetched just because they raced.
	key := r.String()
	if keychain != nil {
		key += fmt.Sprintf("\x00%T:%p", keychain, keychain)
	}
	ch := s.pulls.DoChan(key, func() (any, error) {
		// Detached from any one caller's cancellation (each caller still
		// stops waiting when its ctx ends); Close cancels it.
		pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		defer cancel()
		stop := context.AfterFunc(s.ctx, cancel)
		defer stop()
		s.mu.Lock()
		if s.ctx.Err() != nil {
			s.mu.Unlock()
			return nil, fmt.Errorf("pull %s: image store closed", r)
		}
		s.wg.Add(1)
		s.mu.Unlock()
		defer s.wg.Done()
		return s.pull(pctx, r, keychain)
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*Image).clone(), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("pull %s: %w", r, ctx.Err())
	}
}

func (s *Store) pull(ctx context.Context, r Reference, keychain authn.Keychain) (*Image, error) {
	start := time.Now()
	ref, err := r.ggcrRef(s.insecure(r.Registry))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, r, err)
	}
	if keychain == nil {
		keychain = authn.NewMultiKeychain() // anonymous
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	opts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(keychain),
		remote.WithTransport(s.transport()),
		remote.WithPlatform(*s.opts.Platform),
		remote.WithUserAgent(s.opts.UserAgent),
		remote.WithRetryBackoff(remote.Backoff{Duration: 500 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 3}),
	}
	desc, err := remote.Get(ref, opts...)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", r, err)
	}
	img, err := desc.Image() // picks the platform from an index
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", r, err)
	}
	repoDigest := r.Repo() + "@" + desc.Digest.String()
	tag := ""
	if r.Tag != "" {
		tag = r.Repo() + ":" + r.Tag
	}
	out, err := s.store(ctx, img, tag, repoDigest, fromRegistry)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", r, err)
	}
	s.log.Info("image pulled", "ref", r.String(), "id", out.ID, "layers", len(out.Layers), "bytes", out.Size(), "took", time.Since(start).Round(time.Millisecond))
	return out, nil
}

// layerSource says how store reads an image.
type layerSource int

const (
	// fromRegistry: layers are read as distributed (Compressed) and
	// decompressed here, faster than go-containerregistry's compress/gzip.
	fromRegistry layerSource = iota
	// fromOCIArchive: layers are read Uncompressed.
	fromOCIArchive
	// fromDockerArchive: as fromOCIArchive, and no manifest or layer digests
	// are computed: a docker save tar has no manifest, and its layers are
	// usually uncompressed, so go-containerregistry would gzip every layer
	// only to make up digests.
	fromDockerArchive
)

// store unpacks a v1.Image's layers and records it.
func (s *Store) store(ctx context.Context, img v1.Image, tag, repoDigest string, src layerSource) (*Image, error) {
	rawCfg, err := img.RawConfigFile()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	id, err := img.ConfigName()
	if err != nil {
		return nil, err
	}
	blobs := map[string][]byte{id.String(): rawCfg}
	var mdig string
	if src != fromDockerArchive {
		rawMan, err := img.RawManifest()
		if err != nil {
			return nil, fmt.Errorf("manifest: %w", err)
		}
		d, err := img.Digest()
		if err != nil {
			return nil, err
		}
		mdig = d.String()
		blobs[mdig] = rawMan
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("layers: %w", err)
	}
	if len(layers) != len(cfg.RootFS.DiffIDs) {
		return nil, fmt.Errorf("%w: manifest has %d layers, config %d diffIDs", ErrInvalid, len(layers), len(cfg.RootFS.DiffIDs))
	}
	rec := &Image{ID: id.String(), ManifestDigest: mdig, Config: cfg.Config, OS: cfg.OS, Arch: cfg.Architecture}
	diffIDs := make([]string, len(layers))
	for i, d := range cfg.RootFS.DiffIDs {
		diffIDs[i] = d.String()
	}
	s.pin(diffIDs)
	defer s.unpin(diffIDs)

	rec.Layers = make([]Layer, len(layers))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.opts.MaxParallelLayers)
	for i, l := range layers {
		rec.Layers[i].DiffID = diffIDs[i]
		if src != fromDockerArchive {
			if d, err := l.Digest(); err == nil {
				rec.Layers[i].Digest = d.String()
			}
		}
		open := l.Uncompressed
		if src == fromRegistry {
			open = func() (io.ReadCloser, error) { return decompressed(l) }
		}
		g.Go(func() error {
			n, err := s.ensureSnapshot(gctx, diffIDs[i], open)
			rec.Layers[i].Size = n
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return s.commit(rec, tag, repoDigest, blobs)
}

func (s *Store) insecure(host string) bool {
	h, _, err := net.SplitHostPort(host)
	if err != nil {
		h = host
	}
	for _, r := range s.opts.InsecureRegistries {
		r = strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(r, "http://"), "https://"), "/")
		if r == host || r == h {
			return true
		}
	}
	return false
}

// transport sends plain HTTP, and skips TLS verification, only for insecure
// registries. (go-containerregistry itself would fall back to HTTP for
// localhost and private addresses.)
func (s *Store) transport() http.RoundTripper {
	secure := remote.DefaultTransport.(*http.Transport).Clone()
	insecure := secure.Clone()
	if s.opts.RootCAs != nil {
		secure.TLSClientConfig = &tls.Config{RootCAs: s.opts.RootCAs, MinVersion: tls.VersionTLS12}
	}
	insecure.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // only for registries the admin marked insecure
	return &schemeGuard{s: s, secure: secure, insecure: insecure}
}

type schemeGuard struct {
	s                *Store
	secure, insecure http.RoundTripper
}

func (g *schemeGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	if g.s.insecure(req.URL.Host) {
		return g.insecure.RoundTrip(req)
	}
	if req.URL.Scheme != "https" {
		if req.Body != nil {
			io.Copy(io.Discard, req.Body)
			req.Body.Close()
		}
		return nil, fmt.Errorf("%s: %w", req.URL.Host, ErrInsecure)
	}
	return g.secure.RoundTrip(req)
}

// decompressed opens a layer blob and undoes its compression, found from the
// content (gzip, zstd or none), as containerd does.
func decompressed(l v1.Layer) (io.ReadCloser, error) {
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(rc, 64<<10)
	magic, _ := br.Peek(4)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			rc.Close()
			return nil, err
		}
		return &readCloser{Reader: zr, close: func() error { zr.Close(); return rc.Close() }}, nil
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			rc.Close()
			return nil, err
		}
		return &readCloser{Reader: zr, close: func() error { zr.Close(); return rc.Close() }}, nil
	}
	return &readCloser{Reader: br, close: rc.Close}, nil
}

type readCloser struct {
	io.Reader
	close func() error
}

func (r *readCloser) Close() error { return r.close() }
