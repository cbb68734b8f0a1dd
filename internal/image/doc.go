// Package image is the agent's image store: it pulls images from OCI/Docker
// registries (go-containerregistry), imports OCI image-layout and `docker save`
// tars, unpacks layers once into directories that overlayfs stacks as a
// container's rootfs, and garbage-collects images nobody uses when the disk
// fills up.
//
// # On-disk layout
//
// The store owns one root directory (the agent uses DATA/agent/image-store;
// DATA/agent/images/ is only an import source for air-gapped nodes):
//
//	ROOT/
//	├── lock                          flock: one process owns the store
//	├── version                       schema version ("1")
//	├── blobs/sha256/<hex>            manifests and image configs, by digest
//	├── snapshots/sha256/<hex>/       one unpacked layer per diffID (the digest of the
//	│   ├── bin/busybox                 uncompressed layer tar); overlay whiteouts are
//	│   ├── bin/.wh.old  → c 0:0        char devices 0/0, opaque dirs carry the
//	│   └── etc/  trusted.overlay.opaque=y xattr; shared by every image using the layer
//	├── images/<config hex>.json      image records: ID (config digest), repo tags,
//	│                                   repo digests, manifest digest, layer diffIDs and
//	│                                   sizes, the image config, last-used time
//	├── imports/<file sha256>         ImportDir markers: the tar with this digest was
//	│                                   imported (contents: the names it gave)
//	└── tmp/                          work dirs; a snapshot is unpacked here and renamed
//	                                    into snapshots/ when complete; emptied by Open
//
// Compressed layer blobs are not kept: a layer is streamed from the registry (or
// the import tar), its diffID verified while it is unpacked, and only the
// unpacked snapshot stays, so a layer costs its unpacked size once, however many
// images share it.
//
// # Using it from the agent
//
//	st, err := image.Open(filepath.Join(data, "agent/image-store"), image.Options{
//		InsecureRegistries: cfg.InsecureRegistries, // HTTP (or unverified TLS) only for these
//	})
//	defer st.Close()
//	st.ImportDir(ctx, filepath.Join(data, "agent/images")) // at start: air-gap tars
//
//	// per container: the pod's imagePullSecrets' data → keychain
//	kc, err := image.KeychainFromSecrets(secret.Data[".dockerconfigjson"])
//	img, err := st.Ensure(ctx, c.Image, image.PullPolicy(c.ImagePullPolicy), kc)
//	// errors.Is(err, image.ErrNeverPull) → ErrImageNeverPull; any other
//	// error → ErrImagePull / ImagePullBackOff, err.Error() carrying the
//	// registry's message ("… DENIED: …", "… UNAUTHORIZED: …")
//	lower, err := st.LowerDirs(img) // top layer first: "lowerdir=" + strings.Join(lower, ":")
//	img.Config                      // Entrypoint, Cmd, Env, WorkingDir, User, ExposedPorts…
//	status.Image, status.ImageID = c.Image, img.ImageRef() // docker.io/library/busybox@sha256:…
//	st.MarkUsed(img.ID)             // when a container starts (LRU order for GC)
//
//	// periodically (kubelet: every 5 min), inUse = IDs of images of containers that exist
//	st.GC(ctx, inUse)
//	st.Stats()                      // imagefs usage for DiskPressure
//
// A Store holds an flock on its root: one process owns it. `skiff images
// import|ls|rm` on a node whose agent runs must go through the agent (or drop
// the tar into DATA/agent/images/), not open the store itself.
//
// Snapshots are read-only lower layers: nothing may write into them. The
// container's writable upper and work dirs live elsewhere (the runtime's
// container directory). overlayfs's mount data is limited to a page, so with
// this root (~120 bytes a lowerdir) a legacy mount(2) takes about 30 layers;
// deeper images need the new mount API's "lowerdir+" (fsconfig, Linux 6.8+)
// or short symlinks to the snapshots.
package image
