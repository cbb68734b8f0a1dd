package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/skiff-dev/skiff/internal/agent/imagesapi"
	"github.com/skiff-dev/skiff/internal/image"
	"github.com/skiff-dev/skiff/internal/runtime"
	"github.com/skiff-dev/skiff/internal/server"
)

func imagesCommand() *cli.Command {
	dataDir := func() cli.Flag {
		return &cli.StringFlag{Name: "data-dir", Aliases: []string{"d"}, Value: server.DefaultDataDir, EnvVars: []string{"SKIFF_DATA_DIR"}, Usage: "the node's data dir"}
	}
	return &cli.Command{
		Name:  "images",
		Usage: "list, import and remove the node's container images (through the running agent, else on its store)",
		Subcommands: []*cli.Command{
			{
				Name:      "import",
				Usage:     "import images from OCI image-layout tars or `docker save` tars",
				ArgsUsage: "FILE…",
				Flags:     []cli.Flag{dataDir()},
				Action: func(c *cli.Context) error {
					if c.NArg() == 0 {
						return cli.Exit("skiff images import: no FILE given", 2)
					}
					imgs, err := connectImages(c, true)
					if err != nil {
						return err
					}
					defer imgs.Close()
					failed := false
					for _, f := range c.Args().Slice() {
						names, err := imgs.ImportFile(c.Context, f)
						if err != nil {
							fmt.Fprintf(c.App.ErrWriter, "error importing %s: %v\n", f, err)
							failed = true
							continue
						}
						for _, n := range names {
							fmt.Fprintln(c.App.Writer, n)
						}
					}
					if failed {
						return cli.Exit("skiff images import: unable to import the image(s)", 1)
					}
					return nil
				},
			},
			{
				Name:    "ls",
				Aliases: []string{"list"},
				Usage:   "list images (as `crictl images`)",
				Flags: []cli.Flag{
					dataDir(),
					&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "only show image IDs"},
					&cli.BoolFlag{Name: "no-trunc", Usage: "show full image IDs"},
				},
				Action: func(c *cli.Context) error {
					if c.NArg() > 0 {
						return cli.Exit(fmt.Sprintf("skiff images ls: unexpected argument %q", c.Args().First()), 2)
					}
					imgs, err := connectImages(c, false)
					if err != nil {
						return err
					}
					defer imgs.Close()
					list, err := imgs.List(c.Context)
					if err != nil {
						return cli.Exit(fmt.Sprintf("skiff images ls: %v", err), 1)
					}
					if c.Bool("quiet") {
						for _, img := range list {
							fmt.Fprintln(c.App.Writer, img.ID)
						}
						return nil
					}
					return writeImageTable(c.App.Writer, list, c.Bool("no-trunc"))
				},
			},
			{
				Name:      "rm",
				Aliases:   []string{"rmi", "remove"},
				Usage:     "remove images (all their names) that no container uses",
				ArgsUsage: "REF…",
				Flags:     []cli.Flag{dataDir()},
				Action: func(c *cli.Context) error {
					if c.NArg() == 0 {
						return cli.Exit("skiff images rm: no image given", 2)
					}
					imgs, err := connectImages(c, false)
					if err != nil {
						return err
					}
					defer imgs.Close()
					failed := false
					for _, ref := range c.Args().Slice() {
						deleted, err := imgs.Remove(c.Context, ref)
						if err != nil {
							fmt.Fprintf(c.App.ErrWriter, "error removing image %q: %v\n", ref, err)
							failed = true
							continue
						}
						for _, n := range deleted {
							fmt.Fprintf(c.App.Writer, "Deleted: %s\n", n)
						}
					}
					if failed {
						return cli.Exit("skiff images rm: unable to remove the image(s)", 1)
					}
					return nil
				},
			},
		},
	}
}

// connectImages reaches the node's images through its agent, or its store
// when no agent runs.
func connectImages(c *cli.Context, create bool) (imagesapi.Images, error) {
	data := c.String("data-dir")
	imgs, err := imagesapi.Connect(c.Context, data, imagesapi.ConnectOptions{
		Create: create,
		InUse:  func() (map[string]bool, error) { return containerImagesInUse(c.Context, data) },
		Logger: slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return nil, cli.Exit(fmt.Sprintf("skiff images %s: %v", c.Command.Name, err), 1)
	}
	return imgs, nil
}

// containerImagesInUse lists the images of the containers a stopped agent
// left (they keep running without it).
func containerImagesInUse(_ context.Context, data string) (map[string]bool, error) {
	root := filepath.Join(data, "agent", "containers")
	if _, err := os.Stat(filepath.Join(root, "containers")); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	rt, err := runtime.Open(root, runtime.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	defer rt.Close()
	return imagesapi.InUseFunc(rt)()
}

// writeImageTable prints images as `crictl images` does: a row per repo tag
// (IMAGE, TAG), the ID without "sha256:" cut to 13 characters, and the size
// in decimal units with 3 significant digits.
func writeImageTable(w io.Writer, imgs []*image.Image, noTrunc bool) error {
	imgs = append([]*image.Image(nil), imgs...)
	sort.SliceStable(imgs, func(i, j int) bool {
		a, b := imgs[i], imgs[j]
		if len(a.RepoTags) > 0 && len(b.RepoTags) > 0 {
			return a.RepoTags[0] < b.RepoTags[0]
		}
		if len(a.RepoDigests) > 0 && len(b.RepoDigests) > 0 {
			return a.RepoDigests[0] < b.RepoDigests[0]
		}
		return a.ID < b.ID
	})
	tw := tabwriter.NewWriter(w, 20, 1, 3, ' ', 0)
	fmt.Fprintln(tw, "IMAGE\tTAG\tIMAGE ID\tSIZE")
	for _, img := range imgs {
		id := strings.TrimPrefix(img.ID, "sha256:")
		if !noTrunc && len(id) > 13 {
			id = id[:13]
		}
		size := humanSize(img.Size())
		for _, p := range repoTagPairs(img) {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p[0], p[1], id, size)
		}
	}
	return tw.Flush()
}

func repoTagPairs(img *image.Image) [][2]string {
	const none = "<none>"
	name := none
	if len(img.RepoDigests) > 0 {
		if n, _, ok := strings.Cut(img.RepoDigests[0], "@"); ok {
			name = n
		}
	}
	if len(img.RepoTags) == 0 {
		return [][2]string{{name, none}}
	}
	var out [][2]string
	for _, rt := range img.RepoTags {
		i := strings.LastIndex(rt, ":")
		if i < 0 || strings.Contains(rt[i:], "/") {
			out = append(out, [2]string{rt, none})
			continue
		}
		out = append(out, [2]string{rt[:i], rt[i+1:]})
	}
	return out
}

// humanSize is docker/go-units' HumanSizeWithPrecision(size, 3), which
// crictl uses: decimal units, 3 significant digits ("4.26MB", "512B").
func humanSize(n int64) string {
	units := []string{"B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"}
	size := float64(n)
	i := 0
	for size >= 1000 && i < len(units)-1 {
		size /= 1000
		i++
	}
	s := fmt.Sprintf("%.*g", 3, size)
	if strings.Contains(s, "e") { // %g switches to exponents from 1000 up
		s = fmt.Sprintf("%.0f", math.Round(size))
	}
	return s + units[i]
}
