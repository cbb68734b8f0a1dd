package podconfig

import "golang.org/x/sys/unix"

func mknodWhiteout(p string) error { return unix.Mknod(p, unix.S_IFCHR, 0) }

func inode(t interface{ Fatal(...any) }, p string) uint64 {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}
