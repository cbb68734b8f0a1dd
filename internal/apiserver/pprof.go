package apiserver

import (
	"net/http"
	"net/http/pprof"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// servePprof serves the Go runtime profiles to cluster admins only: they
// expose memory contents and can cost CPU.
func (s *Server) servePprof(w http.ResponseWriter, r *http.Request) {
	id, ok := IdentityFrom(r.Context())
	if !ok || !slices.Contains(id.Groups, "system:masters") {
		s.writeError(w, r, apierrors.NewForbidden(schema.GroupResource{}, "", errNotAdmin))
		return
	}
	switch name := strings.TrimPrefix(r.URL.Path, "/debug/pprof/"); name {
	case "":
		pprof.Index(w, r)
	case "cmdline":
		pprof.Cmdline(w, r)
	case "profile":
		pprof.Profile(w, r)
	case "symbol":
		pprof.Symbol(w, r)
	case "trace":
		pprof.Trace(w, r)
	default:
		pprof.Handler(name).ServeHTTP(w, r)
	}
}

type notAdminError struct{}

func (notAdminError) Error() string { return "profiling is for members of system:masters" }

var errNotAdmin = notAdminError{}
