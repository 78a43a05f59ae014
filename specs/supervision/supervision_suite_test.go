package supervision_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

func TestSupervision(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Supervision: the OTP supervisor contract")
}
