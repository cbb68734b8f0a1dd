package registry

import (
	"context"
	"encoding/json"
	"testing"
	"time"
)

// FuzzAppsStrategies feeds arbitrary JSON through what the apiserver does
// with a deployment or replica set body: default, validate (create and
// update), print, scale. None of it may panic.
func FuzzAppsStrategies(f *testing.F) {
	for _, seed := range []string{
		`{}`,
		`{"spec":{"strategy":{"type":"Recreate","rollingUpdate":{"maxSurge":"x%"}}}}`,
		`{"spec":{"selector":{"matchExpressions":[{"key":"a","operator":"In"}]},"replicas":-3}}`,
		`{"spec":{"strategy":{"rollingUpdate":{"maxSurge":"%","maxUnavailable":-1}},"progressDeadlineSeconds":0}}`,
		`{"metadata":{"annotations":{"deprecated.deployment.rollback.to":"x"}},"status":{"collisionCount":-1}}`,
		// Not a Deployment (strategy is an object) but a fine ReplicaSet.
		`{"spec":{"strategy":7,"replicas":2,"template":{"spec":{"containers":[{"name":"c","image":"after-deployment"}]}}}}`,
	} {
		f.Add([]byte(seed))
	}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, r := range []*Resource{deployments(), replicaSets()} {
			obj, old := r.New(), r.New()
			if json.Unmarshal(data, obj) != nil {
				continue // the next resource may still take it
			}
			_ = json.Unmarshal(data, old)
			s := r.Strategy
			s.Default(obj)
			s.Validate(ctx, obj)
			s.ValidateUpdate(ctx, obj, old)
			s.ValidateStatusUpdate(ctx, obj, old)
			s.PrepareForUpdate(ctx, obj, old)
			s.PrepareForStatusUpdate(ctx, obj, old)
			s.TableRow(obj, time.Now())
			s.SelectableFields(obj)
			sa := s.(ScaleAccessor)
			sa.Scale(obj)
			sa.SetReplicas(obj, 2)
		}
	})
}
