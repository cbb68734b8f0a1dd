package proxy

import (
	"fmt"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// SocketBuffer is the send and receive buffer size of the netlink socket
// NewConn sets up. The library sends a whole batch in one sendmsg (which
// fails with EMSGSIZE beyond the send buffer) and asks for an ack per
// message (which overflow a default receive buffer, ENOBUFS, from about a
// hundred services). Like nft itself, raise both with SO_*BUFFORCE (needs
// CAP_NET_ADMIN, which the proxy has anyway). These are limits, not
// allocations: memory is used only while a batch is in flight.
const SocketBuffer = 256 << 20

// NewConn returns an nftables connection whose netlink sockets can carry a
// full sync of tens of thousands of services in one batch. Pass
// nftables.WithNetNSFd to work in another network namespace.
func NewConn(opts ...nftables.ConnOption) (*nftables.Conn, error) {
	opts = append(opts, nftables.WithSockOptions(func(c *netlink.Conn) error {
		rc, err := c.SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		err = rc.Control(func(fd uintptr) {
			if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, SocketBuffer); e != nil {
				serr = fmt.Errorf("SO_SNDBUFFORCE: %w", e)
				return
			}
			if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, SocketBuffer); e != nil {
				serr = fmt.Errorf("SO_RCVBUFFORCE: %w", e)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}))
	return nftables.New(opts...)
}
