// Package install registers the provider config API (the internal version and v1alpha1, with
// conversions and defaults) in a runtime.Scheme.
package install

import (
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"

	"github.com/metalforge/metalforge/pkg/apis/metal"
	"github.com/metalforge/metalforge/pkg/apis/metal/v1alpha1"
)

// AddToScheme adds both versions to s and makes v1alpha1 the preferred external version.
func AddToScheme(s *runtime.Scheme) error {
	if err := metal.AddToScheme(s); err != nil {
		return fmt.Errorf("add internal metal types: %w", err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		return fmt.Errorf("add metal v1alpha1 types: %w", err)
	}
	if err := s.SetVersionPriority(v1alpha1.SchemeGroupVersion); err != nil {
		return fmt.Errorf("set metal version priority: %w", err)
	}
	return nil
}

// Install is AddToScheme for callers that build their scheme at start-up; it panics on error,
// which only a programming mistake (a conflicting registration) can cause.
func Install(s *runtime.Scheme) {
	if err := AddToScheme(s); err != nil {
		panic(err)
	}
}
