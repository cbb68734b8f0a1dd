//go:build tools

// Package tools pins modules the packages under construction use, so that
// concurrent work does not race on go.mod. Removed once everything imports
// them for real.
package tools

import (
	_ "github.com/google/gnostic-models/openapiv2"
	_ "github.com/google/gnostic-models/openapiv3"
	_ "github.com/urfave/cli/v2"
	_ "go.etcd.io/bbolt"
	_ "golang.org/x/sync/errgroup"
	_ "gopkg.in/evanphx/json-patch.v4"
	_ "k8s.io/apimachinery/pkg/util/strategicpatch"
	_ "k8s.io/client-go/discovery"
	_ "k8s.io/client-go/dynamic"
	_ "k8s.io/client-go/informers"
	_ "k8s.io/client-go/kubernetes"
	_ "k8s.io/client-go/openapi3"
	_ "k8s.io/client-go/tools/cache"
	_ "k8s.io/client-go/tools/clientcmd"
	_ "k8s.io/client-go/util/cert"
	_ "k8s.io/kube-openapi/pkg/spec3"
	_ "k8s.io/kube-openapi/pkg/validation/spec"
	_ "sigs.k8s.io/json"
	_ "sigs.k8s.io/yaml"
)
