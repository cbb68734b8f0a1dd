package runtime

import goruntime "runtime"

// init keeps the main goroutine on the process's main thread for the whole
// run (package inits run on the main goroutine, and a lock taken in an init
// function holds through main). libcontainer joins a container's mount
// namespace from a goroutine that locks its thread and exits without
// unlocking, so that Go ends the thread; were that goroutine scheduled on
// the main thread, which Go never ends, the main thread would stay in the
// container's mount namespace: /proc/self/mountinfo (read through the
// thread-group leader) would show the container's mounts, and the
// namespace, with the container's rootfs and volume mounts, would outlive
// the container. With the main thread taken, no other goroutine runs on it.
func init() {
	goruntime.LockOSThread()
}
