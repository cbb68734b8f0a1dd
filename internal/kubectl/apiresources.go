package kubectl

import (
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/pflag"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/sets"
)

type apiResourcesOptions struct {
	output     string
	namespaced bool
	apiGroup   string
	verbs      []string
	categories []string
	sortBy     string
	noHeaders  bool
	fs         *pflag.FlagSet
}

func init() {
	register(command{
		name:  "api-resources",
		short: "Print the supported API resources on the server",
		flags: func(fs *pflag.FlagSet) any {
			o := &apiResourcesOptions{fs: fs}
			fs.StringVarP(&o.output, "output", "o", "", "Output format. One of: (wide, name).")
			fs.BoolVar(&o.namespaced, "namespaced", true, "If false, non-namespaced resources will be returned, otherwise returning namespaced resources by default.")
			fs.StringVar(&o.apiGroup, "api-group", "", "Limit to resources in the specified API group.")
			fs.StringSliceVar(&o.verbs, "verbs", nil, "Limit to resources that support the specified verbs.")
			fs.StringSliceVar(&o.categories, "categories", nil, "Limit to resources that belong to the specified categories.")
			fs.StringVar(&o.sortBy, "sort-by", "", "If non-empty, sort list of resources using specified field. One of (name, kind).")
			fs.BoolVar(&o.noHeaders, "no-headers", false, "When using the default or custom-column output format, don't print headers (default print headers).")
			return o
		},
		run: func(e *env, opts any, args []string) error {
			return runAPIResources(e, opts.(*apiResourcesOptions), args)
		},
	})
}

type groupResource struct {
	group        string
	groupVersion string
	res          metav1.APIResource
}

func runAPIResources(e *env, o *apiResourcesOptions, args []string) error {
	if len(args) != 0 {
		return fmt.Errorf("unexpected arguments: %v\nSee 'kubectl api-resources -h' for help and examples", args)
	}
	switch o.output {
	case "", "wide", "name":
	default:
		return fmt.Errorf("--output %v is not available", o.output)
	}
	switch o.sortBy {
	case "", "name", "kind":
	default:
		return fmt.Errorf("--sort-by accepts only name or kind")
	}
	dc, err := e.discovery()
	if err != nil {
		return err
	}
	// Like kubectl, a discovery failure still prints the header, then
	// whatever was found, then the error.
	lists, err := dc.ServerPreferredResources()
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	nsChanged := o.fs.Changed("namespaced")
	var resources []groupResource
	for _, list := range lists {
		if len(list.APIResources) == 0 {
			continue
		}
		gv, err := schema.ParseGroupVersion(list.GroupVersion)
		if err != nil {
			continue
		}
		for _, r := range list.APIResources {
			if len(r.Verbs) == 0 {
				continue
			}
			if o.apiGroup != "" && o.apiGroup != gv.Group {
				continue
			}
			if nsChanged && o.namespaced != r.Namespaced {
				continue
			}
			if len(o.verbs) > 0 && !sets.New(r.Verbs...).HasAll(o.verbs...) {
				continue
			}
			if len(o.categories) > 0 && !sets.New(r.Categories...).HasAll(o.categories...) {
				continue
			}
			resources = append(resources, groupResource{group: gv.Group, groupVersion: gv.String(), res: r})
		}
	}
	w := newTabWriter(e.out)
	defer w.Flush()
	if !o.noHeaders && o.output != "name" {
		cols := []string{"NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"}
		if o.output == "wide" {
			cols = append(cols, "VERBS", "CATEGORIES")
		}
		fmt.Fprintf(w, "%s\n", strings.Join(cols, "\t"))
	}
	sort.SliceStable(resources, func(i, j int) bool {
		a, b := resources[i], resources[j]
		var x, y string
		switch o.sortBy {
		case "name":
			x, y = a.res.Name, b.res.Name
		case "kind":
			x, y = a.res.Kind, b.res.Kind
		default:
			x, y = a.group, b.group
		}
		if c := strings.Compare(x, y); c != 0 {
			return c < 0
		}
		return a.res.Name < b.res.Name
	})
	for _, r := range resources {
		switch o.output {
		case "name":
			name := r.res.Name
			if r.group != "" {
				name += "." + r.group
			}
			fmt.Fprintf(w, "%s\n", name)
		case "wide":
			fmt.Fprintf(w, "%s\t%s\t%s\t%v\t%s\t%v\t%v\n", r.res.Name, strings.Join(r.res.ShortNames, ","),
				r.groupVersion, r.res.Namespaced, r.res.Kind, strings.Join(r.res.Verbs, ","), strings.Join(r.res.Categories, ","))
		default:
			fmt.Fprintf(w, "%s\t%s\t%s\t%v\t%s\n", r.res.Name, strings.Join(r.res.ShortNames, ","),
				r.groupVersion, r.res.Namespaced, r.res.Kind)
		}
	}
	w.Flush()
	return reduceErrs(errs)
}
