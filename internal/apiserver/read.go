package apiserver

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metainternalversionscheme "k8s.io/apimachinery/pkg/apis/meta/internalversion/scheme"
	metainternalversionvalidation "k8s.io/apimachinery/pkg/apis/meta/internalversion/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/skiff-dev/skiff/internal/registry"
	"github.com/skiff-dev/skiff/internal/store"
)

func (s *Server) get(w http.ResponseWriter, r *http.Request, ri *reqInfo) {
	m, err := negotiate(r, ri.sub == "")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var opts metav1.GetOptions
	if err := metainternalversionscheme.ParameterCodec.DecodeParameters(r.URL.Query(), metav1.SchemeGroupVersion, &opts); err != nil {
		s.writeError(w, r, apierrors.NewBadRequest(err.Error()))
		return
	}
	asked, err := parseRV(opts.ResourceVersion)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	obj, _, err := s.getObject(r.Context(), ri.res, ri.namespace, ri.name)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if asked > 0 {
		if cur, err := s.store.CurrentRevision(r.Context()); err == nil && asked > cur {
			s.writeError(w, r, errTooLargeRV(asked, cur))
			return
		}
	}
	s.writeObject(w, http.StatusOK, s.render(r, ri.res, obj, m), m)
}

// render converts obj to the negotiated form.
func (s *Server) render(r *http.Request, res *registry.Resource, obj runtime.Object, m media) interface{} {
	switch m.kind {
	case outTable:
		return s.table(r, res, []runtime.Object{obj}, m, metav1.ListMeta{}, false)
	case outPartial:
		return partialMeta(obj, m.version)
	}
	return obj
}

func partialMeta(obj runtime.Object, version string) *metav1.PartialObjectMetadata {
	p := &metav1.PartialObjectMetadata{}
	if m, err := meta.Accessor(obj); err == nil {
		om := metav1.ObjectMeta{}
		meta.AsPartialObjectMetadata(m).ObjectMeta.DeepCopyInto(&om)
		p.ObjectMeta = om
	}
	p.APIVersion, p.Kind = metav1.GroupName+"/"+version, "PartialObjectMetadata"
	return p
}

// table builds a metav1.Table for objs; noHeaders omits the column
// definitions (watch events after the first).
func (s *Server) table(r *http.Request, res *registry.Resource, objs []runtime.Object, m media, lm metav1.ListMeta, noHeaders bool) *metav1.Table {
	include := metav1.IncludeMetadata
	if v := r.URL.Query().Get("includeObject"); v != "" {
		include = metav1.IncludeObjectPolicy(v)
	}
	now := time.Now()
	t := &metav1.Table{ListMeta: lm, Rows: []metav1.TableRow{}}
	t.APIVersion, t.Kind = metav1.GroupName+"/"+m.version, "Table"
	if !noHeaders {
		t.ColumnDefinitions = res.Strategy.TableColumns()
	}
	for _, obj := range objs {
		row := metav1.TableRow{Cells: res.Strategy.TableRow(obj, now)}
		switch include {
		case metav1.IncludeNone:
		case metav1.IncludeObject:
			row.Object.Object = obj
		default:
			row.Object.Object = partialMeta(obj, m.version)
		}
		t.Rows = append(t.Rows, row)
	}
	return t
}

// listOptions decodes and validates list/watch query parameters like
// kube-apiserver does.
func (s *Server) listOptions(r *http.Request, ri *reqInfo, isWatch bool) (*metainternalversion.ListOptions, *filter, error) {
	opts := &metainternalversion.ListOptions{}
	if err := metainternalversionscheme.ParameterCodec.DecodeParameters(r.URL.Query(), metav1.SchemeGroupVersion, opts); err != nil {
		return nil, nil, apierrors.NewBadRequest(err.Error())
	}
	if ri.watchPath {
		opts.Watch = true
	}
	if isWatch {
		opts.Watch = true
	}
	if errs := metainternalversionvalidation.ValidateListOptions(opts, true); len(errs) > 0 {
		return nil, nil, apierrors.NewInvalid(schema.GroupKind{Group: metav1.GroupName, Kind: "ListOptions"}, "", errs)
	}
	if err := checkFieldSelector(ri.res, opts.FieldSelector); err != nil {
		return nil, nil, err
	}
	f := &filter{labels: opts.LabelSelector, fields: opts.FieldSelector}
	if ri.name != "" {
		// A named watch (…/pods/x?watch=1) is a watch on metadata.name=x.
		sel := fields.OneTermEqualSelector("metadata.name", ri.name)
		if f.fields != nil && !f.fields.Empty() {
			sel = fields.AndSelectors(f.fields, sel)
		}
		f.fields = sel
	}
	return opts, f, nil
}

// continueToken is the opaque list continuation, in kube-apiserver's
// format: base64 of {"v":"meta.k8s.io/v1","rv":N,"start":"key"}.
type continueToken struct {
	APIVersion      string `json:"v"`
	ResourceVersion int64  `json:"rv"`
	StartKey        string `json:"start"`
}

func encodeContinue(rev int64, startKey, prefix string) string {
	data, _ := json.Marshal(continueToken{APIVersion: "meta.k8s.io/v1", ResourceVersion: rev, StartKey: startKey[len(prefix):]})
	return base64.RawURLEncoding.EncodeToString(data)
}

func decodeContinue(tok, prefix string) (rev int64, startKey string, err error) {
	bad := func(msg string) error {
		return apierrors.NewBadRequest(fmt.Sprintf("continue key is not valid: %s", msg))
	}
	data, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return 0, "", bad(err.Error())
	}
	var c continueToken
	if err := json.Unmarshal(data, &c); err != nil {
		return 0, "", bad(err.Error())
	}
	if c.APIVersion != "meta.k8s.io/v1" {
		return 0, "", bad(fmt.Sprintf("server does not recognize this encoded key: %s", c.APIVersion))
	}
	if c.ResourceVersion <= 0 {
		return 0, "", bad("incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
	}
	if c.StartKey == "" || c.StartKey[0] == '/' {
		return 0, "", bad("encoded start key is not valid")
	}
	return c.ResourceVersion, prefix + c.StartKey, nil
}

var errContinueExpired = apierrors.NewResourceExpired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.")

// listPage reads one page of matching objects honouring limit/continue and
// resourceVersion/resourceVersionMatch.
func (s *Server) listPage(r *http.Request, ri *reqInfo, opts *metainternalversion.ListOptions, f *filter) ([]runtime.Object, metav1.ListMeta, error) {
	ctx := r.Context()
	prefix := collectionPrefix(ri.res, ri.namespace)
	var lm metav1.ListMeta
	var rev int64
	start := ""
	if opts.Continue != "" {
		var err error
		if rev, start, err = decodeContinue(opts.Continue, prefix); err != nil {
			return nil, lm, err
		}
	} else {
		asked, err := parseRV(opts.ResourceVersion)
		if err != nil {
			return nil, lm, err
		}
		if opts.ResourceVersionMatch == metav1.ResourceVersionMatchExact {
			rev = asked
		} else if asked > 0 {
			cur, err := s.store.CurrentRevision(ctx)
			if err != nil {
				return nil, lm, storeErr(err, ri.gr(), "")
			}
			if asked > cur {
				return nil, lm, errTooLargeRV(asked, cur)
			}
		}
	}
	limit := opts.Limit
	if limit < 0 {
		limit = 0 // kube-apiserver treats a negative limit as no limit
	}
	var out []runtime.Object
	for {
		batch := int64(0)
		if limit > 0 {
			batch = limit - int64(len(out))
			if !f.empty() && batch < 100 {
				batch = 100 // selectors: read ahead, filter, then cut
			}
		}
		res, err := s.store.List(ctx, prefix, store.ListOptions{Revision: rev, Limit: batch, StartKey: start})
		if err != nil {
			if errors.Is(err, store.ErrCompacted) {
				if opts.Continue != "" {
					return nil, lm, errContinueExpired
				}
				return nil, lm, apierrors.NewResourceExpired("The resourceVersion for the provided list is too old.")
			}
			if errors.Is(err, store.ErrFutureRevision) {
				cur, _ := s.store.CurrentRevision(ctx)
				return nil, lm, errTooLargeRV(rev, cur)
			}
			return nil, lm, storeErr(err, ri.gr(), "")
		}
		rev = res.Revision
		for i, kv := range res.KVs {
			obj, err := decodeStored(ri.res, kv.Value, kv.ModRevision)
			if err != nil {
				return nil, lm, apierrors.NewInternalError(err)
			}
			if !f.matches(ri.res, obj) {
				continue
			}
			out = append(out, obj)
			if limit > 0 && int64(len(out)) == limit {
				more := res.More || i < len(res.KVs)-1
				if more {
					lm.Continue = encodeContinue(rev, kv.Key+"\x00", prefix)
					if f.empty() {
						remaining := int64(len(res.KVs) - 1 - i)
						if res.More {
							remaining += res.RemainingCount
						}
						if remaining > 0 {
							lm.RemainingItemCount = &remaining
						}
					}
				}
				lm.ResourceVersion = strconv.FormatInt(rev, 10)
				return out, lm, nil
			}
		}
		if !res.More || len(res.KVs) == 0 {
			break
		}
		start = res.KVs[len(res.KVs)-1].Key + "\x00"
	}
	lm.ResourceVersion = strconv.FormatInt(rev, 10)
	return out, lm, nil
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, ri *reqInfo) {
	m, err := negotiate(r, true)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	opts, f, err := s.listOptions(r, ri, false)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	objs, lm, err := s.listPage(r, ri, opts, f)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeObject(w, http.StatusOK, s.renderList(r, ri.res, objs, lm, m), m)
}

func (s *Server) renderList(r *http.Request, res *registry.Resource, objs []runtime.Object, lm metav1.ListMeta, m media) interface{} {
	switch m.kind {
	case outTable:
		return s.table(r, res, objs, m, lm, false)
	case outPartial:
		l := &metav1.PartialObjectMetadataList{ListMeta: lm, Items: []metav1.PartialObjectMetadata{}}
		l.APIVersion, l.Kind = metav1.GroupName+"/"+m.version, "PartialObjectMetadataList"
		for _, o := range objs {
			l.Items = append(l.Items, *partialMeta(o, m.version))
		}
		return l
	}
	list := res.NewList()
	list.GetObjectKind().SetGroupVersionKind(res.GroupVersion().WithKind(res.ListKind))
	if objs == nil {
		objs = []runtime.Object{}
	}
	for _, o := range objs {
		// Items of a typed list carry no apiVersion/kind, as in kube-apiserver.
		o.GetObjectKind().SetGroupVersionKind(schema.GroupVersionKind{})
	}
	_ = meta.SetList(list, objs)
	if la, err := meta.ListAccessor(list); err == nil {
		la.SetResourceVersion(lm.ResourceVersion)
		la.SetContinue(lm.Continue)
		la.SetRemainingItemCount(lm.RemainingItemCount)
	}
	return list
}
