package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// applied is one object the demo created from a manifest.
type applied struct {
	Kind, Namespace, Name string
}

// applyFile server-side-applies every object in a YAML file, the way
// `kubectl apply --server-side` does, so the demo needs no kubectl.
// Namespaced objects without a namespace go to namespace.
func applyFile(ctx context.Context, cfg *rest.Config, path, namespace string) ([]applied, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc))
	var out []applied
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		var obj unstructured.Unstructured
		if err := dec.Decode(&obj.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return out, fmt.Errorf("%s: %w", path, err)
		}
		if len(obj.Object) == 0 {
			continue // an empty document between ---
		}
		gvk := obj.GroupVersionKind()
		mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return out, fmt.Errorf("%s: %s %s: %w", path, gvk.Kind, obj.GetName(), err)
		}
		var ri dynamic.ResourceInterface = dc.Resource(mapping.Resource)
		if mapping.Scope.Name() == "namespace" {
			if obj.GetNamespace() == "" {
				obj.SetNamespace(namespace)
			}
			ri = dc.Resource(mapping.Resource).Namespace(obj.GetNamespace())
		}
		if _, err := ri.Apply(ctx, obj.GetName(), &obj, metav1.ApplyOptions{FieldManager: "nfs-provisioner-demo", Force: true}); err != nil {
			return out, fmt.Errorf("%s: apply %s %s: %w", path, gvk.Kind, obj.GetName(), err)
		}
		out = append(out, applied{Kind: gvk.Kind, Namespace: obj.GetNamespace(), Name: obj.GetName()})
	}
}
