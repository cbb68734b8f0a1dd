package kubectl

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// info is one object read from a manifest, resolved against discovery.
type info struct {
	source    string
	obj       *unstructured.Unstructured
	mapping   *meta.RESTMapping
	namespace string
	name      string
}

var manifestExts = []string{".json", ".yaml", ".yml"}

// readManifests reads -f arguments (files, directories, "-") into infos,
// in the order kubectl visits them.
func (e *env) readManifests(filenames []string, recursive bool) ([]*info, error) {
	var out []*info
	for _, fn := range filenames {
		if fn == "-" {
			infos, err := e.decodeStream(e.in, "STDIN")
			if err != nil {
				return nil, err
			}
			out = append(out, infos...)
			continue
		}
		if strings.HasPrefix(fn, "http://") || strings.HasPrefix(fn, "https://") {
			return nil, fmt.Errorf("reading manifests from URLs is not supported: %s", fn)
		}
		st, err := os.Stat(fn)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("the path %q does not exist", fn)
			}
			return nil, err
		}
		var files []string
		if st.IsDir() {
			err := filepath.Walk(fn, func(path string, fi os.FileInfo, err error) error {
				if err != nil {
					return err
				}
				if fi.IsDir() {
					if path != fn && !recursive {
						return filepath.SkipDir
					}
					return nil
				}
				for _, ext := range manifestExts {
					if filepath.Ext(path) == ext {
						files = append(files, path)
						break
					}
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
		} else {
			files = []string{fn}
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, err
			}
			infos, err := e.decodeStream(bytes.NewReader(data), f)
			if err != nil {
				return nil, err
			}
			out = append(out, infos...)
		}
	}
	return out, nil
}

// decodeStream splits multi-document YAML or concatenated JSON and
// flattens List kinds.
func (e *env) decodeStream(r io.Reader, source string) ([]*info, error) {
	d := utilyaml.NewYAMLOrJSONDecoder(r, 4096)
	var out []*info
	for {
		ext := runtime.RawExtension{}
		if err := d.Decode(&ext); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("error parsing %s: %v", source, err)
		}
		ext.Raw = bytes.TrimSpace(ext.Raw)
		if len(ext.Raw) == 0 || bytes.Equal(ext.Raw, []byte("null")) {
			continue
		}
		obj, _, err := unstructured.UnstructuredJSONScheme.Decode(ext.Raw, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("error validating %q: error validating data: %v; if you choose to ignore these errors, turn validation off with --validate=false", source, err)
		}
		var objs []*unstructured.Unstructured
		switch o := obj.(type) {
		case *unstructured.UnstructuredList:
			for i := range o.Items {
				objs = append(objs, &o.Items[i])
			}
		case *unstructured.Unstructured:
			objs = append(objs, o)
		}
		for _, u := range objs {
			in, err := e.newInfo(u, source)
			if err != nil {
				return nil, err
			}
			out = append(out, in)
		}
	}
}

func (e *env) newInfo(u *unstructured.Unstructured, source string) (*info, error) {
	mapper, err := e.restMapper()
	if err != nil {
		return nil, err
	}
	ns, err := e.ns()
	if err != nil {
		return nil, err
	}
	gvk := u.GroupVersionKind()
	m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		if meta.IsNoMatchError(err) {
			return nil, fmt.Errorf("resource mapping not found for name: %q namespace: %q from %q: %v\nensure CRDs are installed first", u.GetName(), u.GetNamespace(), source, err)
		}
		return nil, fmt.Errorf("unable to recognize %q: %v", source, err)
	}
	in := &info{source: source, obj: u, mapping: m, name: u.GetName()}
	if namespaced(m) {
		objNS := u.GetNamespace()
		switch {
		case objNS == "":
			u.SetNamespace(ns)
			objNS = ns
		case e.nsExplicit && objNS != ns:
			return nil, fmt.Errorf("the namespace from the provided object %q does not match the namespace %q. You must pass '--namespace=%s' to perform this operation.", objNS, ns, objNS)
		}
		in.namespace = objNS
	}
	return in, nil
}
