package image

import "errors"

// Sentinel errors; wrap with fmt.Errorf("…: %w") and test with errors.Is.
var (
	ErrNotFound  = errors.New("image not found")
	ErrInvalid   = errors.New("invalid")
	ErrInUse     = errors.New("image is in use")
	ErrNeverPull = errors.New("image not present and imagePullPolicy is Never")
	ErrLocked    = errors.New("image store is used by another process")
	// ErrUnsafe marks a layer tar entry that would write outside the layer
	// (a "../" path, a path through a symlink, a hard link out of the layer).
	ErrUnsafe = errors.New("unsafe layer entry")
	// ErrInsecure is returned for plain-HTTP access to a registry that is not
	// in Options.InsecureRegistries.
	ErrInsecure = errors.New("registry is not marked insecure: plain HTTP refused")
)
