package cli

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/skiff-dev/skiff/internal/pki"
	"github.com/skiff-dev/skiff/internal/server"
)

// `skiff token`: kubeadm-style bootstrap tokens (Secrets bootstrap-token-<id>
// in kube-system) that agents join with, printed k3s-style behind the CA
// hash: K10<sha256 of the CA>::<id>.<secret>.
func tokenCommand() *cli.Command {
	kubeconfig := &cli.StringFlag{Name: "kubeconfig", EnvVars: []string{"KUBECONFIG"},
		Usage: "kubeconfig of a cluster admin (default " + server.DefaultKubeconfig + ")"}
	return &cli.Command{
		Name:  "token",
		Usage: "manage join (bootstrap) tokens",
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     "create a bootstrap token and print it as a join token",
				ArgsUsage: "[ID.SECRET]",
				Description: "Creates the Secret bootstrap-token-<id> in kube-system and prints K10<CA hash>::<id>.<secret>,\n" +
					"which `skiff agent --token` accepts. Without ID.SECRET a random one is made.",
				Flags: []cli.Flag{
					kubeconfig,
					&cli.DurationFlag{Name: "ttl", Value: 24 * time.Hour, Usage: "how long the token is valid (0: forever)"},
					&cli.StringFlag{Name: "description", Usage: "a human-friendly description of the token"},
				},
				Action: func(c *cli.Context) error {
					if c.NArg() > 1 {
						return cli.Exit(fmt.Sprintf("skiff token create: unexpected argument %q", c.Args().Get(1)), 2)
					}
					if c.Duration("ttl") < 0 {
						return cli.Exit("skiff token create: --ttl must not be negative", 2)
					}
					tok := pki.NewBootstrapToken()
					if arg := c.Args().First(); arg != "" {
						id, secret, ok := pki.ParseBootstrapToken(arg)
						if !ok {
							return cli.Exit(fmt.Sprintf("skiff token create: token %q does not match [a-z0-9]{6}.[a-z0-9]{16}", arg), 2)
						}
						tok.ID, tok.Secret = id, secret
					}
					tok.Description = c.String("description")
					tok.Usages = []string{pki.UsageAuthentication}
					if ttl := c.Duration("ttl"); ttl > 0 {
						tok.Expires = time.Now().Add(ttl).Truncate(time.Second)
					}
					client, err := tokenClient(c)
					if err != nil {
						return err
					}
					full, err := createToken(c.Context, client, tok)
					if err != nil {
						return cli.Exit(fmt.Sprintf("skiff token create: %v", err), 1)
					}
					fmt.Fprintln(c.App.Writer, full)
					return nil
				},
			},
			{
				Name:    "list",
				Aliases: []string{"ls"},
				Usage:   "list bootstrap tokens",
				Flags:   []cli.Flag{kubeconfig},
				Action: func(c *cli.Context) error {
					if c.NArg() > 0 {
						return cli.Exit(fmt.Sprintf("skiff token list: unexpected argument %q", c.Args().First()), 2)
					}
					client, err := tokenClient(c)
					if err != nil {
						return err
					}
					if err := listTokens(c.Context, client, c.App.Writer, c.App.ErrWriter, time.Now()); err != nil {
						return cli.Exit(fmt.Sprintf("skiff token list: %v", err), 1)
					}
					return nil
				},
			},
			{
				Name:      "delete",
				Aliases:   []string{"rm"},
				Usage:     "delete bootstrap tokens",
				ArgsUsage: "ID|ID.SECRET…",
				Flags:     []cli.Flag{kubeconfig},
				Action: func(c *cli.Context) error {
					if c.NArg() == 0 {
						return cli.Exit("skiff token delete: missing token ID", 2)
					}
					var ids []string
					for _, arg := range c.Args().Slice() {
						id := arg
						if t, err := pki.ParseToken(arg); err == nil && !pki.IsBootstrapTokenID(arg) {
							id, _, _ = pki.ParseBootstrapToken(t.Secret)
						}
						if !pki.IsBootstrapTokenID(id) {
							return cli.Exit(fmt.Sprintf("skiff token delete: given token %q didn't match pattern %q or %q",
								arg, "[a-z0-9]{6}", "[a-z0-9]{6}\\.[a-z0-9]{16}"), 2)
						}
						ids = append(ids, id)
					}
					client, err := tokenClient(c)
					if err != nil {
						return err
					}
					for _, id := range ids {
						name := pki.BootstrapTokenSecretPrefix + id
						if err := client.CoreV1().Secrets(metav1.NamespaceSystem).Delete(c.Context, name, metav1.DeleteOptions{}); err != nil {
							return cli.Exit(fmt.Sprintf("skiff token delete: failed to delete bootstrap token %q: %v", id, err), 1)
						}
						fmt.Fprintf(c.App.Writer, "bootstrap token %q deleted\n", id)
					}
					return nil
				},
			},
		},
	}
}

func tokenClient(c *cli.Context) (kubernetes.Interface, error) {
	path := c.String("kubeconfig")
	if path == "" {
		path = server.DefaultKubeconfig
	}
	if l := filepath.SplitList(path); len(l) > 1 {
		path = l[0]
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, cli.Exit(fmt.Sprintf("skiff token: kubeconfig %s: %v", path, err), 1)
	}
	cfg.UserAgent = "skiff-token/" + server.Version
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, cli.Exit(fmt.Sprintf("skiff token: %v", err), 1)
	}
	return client, nil
}

// createToken stores tok and returns it behind the hash of the CA the
// server hands agents (/cacerts, fetched over the kubeconfig's verified
// connection, so the hash is of exactly the bytes agents will see).
func createToken(ctx context.Context, client kubernetes.Interface, tok pki.BootstrapToken) (string, error) {
	caPEM, err := client.CoreV1().RESTClient().Get().AbsPath(pki.CACertsPath).DoRaw(ctx)
	if err != nil {
		return "", fmt.Errorf("fetching the cluster CA: %w", err)
	}
	if _, err := client.CoreV1().Secrets(metav1.NamespaceSystem).Create(ctx, pki.BootstrapTokenSecret(tok), metav1.CreateOptions{}); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return "", fmt.Errorf("a token with ID %q already exists", tok.ID)
		}
		return "", fmt.Errorf("failed to create bootstrap token: %w", err)
	}
	return pki.Token{CAHash: pki.CAHash(caPEM), Secret: tok.String()}.String(), nil
}

// listTokens prints kubeadm's `token list` table, the way kubeadm does:
// one tabwriter per token (the header goes with the first), columns kept
// aligned by fixed widths, nothing at all when there is no token.
func listTokens(ctx context.Context, client kubernetes.Interface, out, errOut io.Writer, now time.Time) error {
	list, err := client.CoreV1().Secrets(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("type", string(corev1.SecretTypeBootstrapToken)).String(),
	})
	if err != nil {
		return fmt.Errorf("failed to list bootstrap tokens: %w", err)
	}
	header := false
	for i := range list.Items {
		t, err := pki.BootstrapTokenFromSecret(&list.Items[i])
		if err != nil {
			fmt.Fprintln(errOut, err)
			continue
		}
		w := tabwriter.NewWriter(out, 10, 4, 3, ' ', 0)
		if !header {
			fmt.Fprintln(w, "TOKEN\tTTL\tEXPIRES\tUSAGES\tDESCRIPTION\tEXTRA GROUPS")
			header = true
		}
		fmt.Fprint(w, tokenRow(t, now))
		if err := w.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// tokenRow is kubeadm's formatBootstrapToken.
func tokenRow(t pki.BootstrapToken, now time.Time) string {
	orNone := func(s string) string {
		if s == "" {
			return "<none>"
		}
		return s
	}
	ttl, expires := "<forever>", "<never>"
	if !t.Expires.IsZero() {
		ttl = duration.ShortHumanDuration(t.Expires.Sub(now))
		expires = t.Expires.Format(time.RFC3339)
	}
	return fmt.Sprintf("%s\t%-9s\t%s\t%-22s\t%-56s\t%s\n", t.String(), ttl, expires,
		orNone(strings.Join(t.Usages, ",")), orNone(t.Description), orNone(strings.Join(t.Groups, ",")))
}
