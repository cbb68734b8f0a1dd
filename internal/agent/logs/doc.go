// Package logs writes container logs in the CRI log format, as containerd
// does for the kubelet, rotates them by size as the kubelet's container log
// manager does, and reads them back with the options of `kubectl logs` as the
// kubelet's ReadLogs does.
//
// # Layout
//
//	DATA/agent/pods/<uid>/logs/<container>/<restartCount>.log     current file
//	DATA/agent/pods/<uid>/logs/<container>/<n>.log.<UTC time>     newest rotated file, plain
//	DATA/agent/pods/<uid>/logs/<container>/<n>.log.<UTC time>.gz  older rotated files
//
// [Dir] and [Path] build these names from the pod directory
// (DATA/agent/pods/<uid>). Logs live in their own logs/ subdirectory so that
// container names never collide with the pod's other directories (volumes,
// etc.). The rotation time is formatted 20060102-150405.000000000 (the
// kubelet uses second precision; rotation here can happen several times a
// second), so names sort in time order. `kubectl logs --previous` is the
// caller reading the file of restartCount-1; removing a pod's logs is
// removing its directory.
//
// # Format
//
// One record per line: `<time> <stream> <tag> <content>\n`, e.g.
//
//	2026-11-28T23:59:59.123456789Z stdout F message
//
// time is RFC 3339 in UTC with nine fraction digits ([TimeFormat]); stream is
// stdout or stderr; tag F ends a line, P is a piece of a line that continues
// in the next record of the stream: lines longer than MaxLineSize (16 KiB) are
// split, and bytes left without a newline at EOF are written as P (as
// containerd's cio). "\r\n" ends a line like "\n".
//
// # Writer
//
// [NewWriter] opens the file (appending), [Writer.Copy] starts reading the
// container's stdout and stderr (usually the read ends of the FIFOs given to
// the runtime as StdoutPath/StderrPath, see [OpenFIFO]). Records are queued in
// a bounded buffer and written by one goroutine, which rotates the file when
// it would exceed MaxSize (10 MiB): the file is renamed to <n>.log.<time> and a
// new one opened; a background goroutine then gzips rotated files but the
// newest and deletes the oldest beyond MaxFiles (5, current included). A stuck
// disk costs a stream at most MaxBlock per record, then records are dropped
// (counted) until the disk makes progress: the container is never blocked
// forever. [Writer.Attach] fans the raw output out to `kubectl attach`
// subscribers, which are disconnected rather than allowed to slow the
// container. When every stream reaches EOF the writer flushes and closes
// itself ([Writer.Done]); [Writer.Close] stops it early.
//
// # Reader
//
// [ReadLogs] writes a run's log to an io.Writer with [ReadOptions] built from
// a pods/log request by [FromPodLogOptions]: follow, tailLines, since,
// timestamps, limitBytes and stream, with the kubelet's semantics — tail counts
// lines of the files (the pieces of a split line separately, an unterminated
// last line not at all), since filters on record times, limitBytes counts
// output bytes including timestamp prefixes and cuts the last line, pieces of
// a split line are joined and get a single timestamp prefix. Unlike the
// kubelet, which reads only the current file, the rotated files of the run are
// read first, oldest first (ReadOptions.CurrentOnly restores the kubelet's
// view), and a follower moves on through rotations without losing lines. A
// follower stops when ctx ends or ReadOptions.Done (the writer's Done) is
// closed and everything is read.
//
// # Use by the agent
//
//	dir := logs.Dir(podDir, c.Name)
//	out, _ := logs.OpenFIFO(filepath.Join(runDir, cid+".stdout"))   // likewise stderr
//	w, _ := logs.NewWriter(logs.Path(podDir, c.Name, restartCount), logs.WriterOptions{Logger: l})
//	w.Copy(out, errf)
//	rt.Create(ctx, runtime.ContainerConfig{…, StdoutPath: out.Name(), StderrPath: errf.Name()})
//	out.ReleaseWriter(); errf.ReleaseWriter()
//	… container exits → streams hit EOF → <-w.Done()
//
//	// pods/log handler
//	o, err := logs.FromPodLogOptions(podLogOpts, time.Now())   // 400 on error
//	o.Done = w.Done()                                          // or a closed channel if not running
//	err = logs.ReadLogs(req.Context(), logs.Path(podDir, name, n), o, flushWriter)
package logs
