//! Every check's code, severity and fixed message. Kiali's codes and wording are kept where
//! the meaning is the same, so runbooks and ignore lists written for Kiali stay valid;
//! checks Kiali lacks get `ML` codes.

use super::report::Severity::{self, *};

/// One check's identity.
#[derive(Debug, Clone, Copy)]
pub struct CodeInfo {
    pub code: &'static str,
    pub severity: Severity,
    pub message: &'static str,
}

const fn c(code: &'static str, severity: Severity, message: &'static str) -> CodeInfo {
    CodeInfo {
        code,
        severity,
        message,
    }
}

/// All codes meshlens reports.
pub const CODES: &[CodeInfo] = &[
    // Generic (selectors).
    c("KIA0002", Error, "More than one selector-less object in the same namespace"),
    c("KIA0004", Warning, "No matching workload found for the selector in this namespace"),
    // AuthorizationPolicy.
    c("KIA0101", Warning, "Namespace not found for this rule"),
    c("KIA0102", Warning, "Only HTTP methods and fully-qualified gRPC names are allowed"),
    c("KIA0104", Error, "This host has no matching entry in the service registry"),
    c("KIA0105", Error, "This field requires mTLS to be enabled"),
    c("KIA0106", Error, "Service Account not found for this principal"),
    // DestinationRule.
    c("KIA0201", Warning, "More than one DestinationRules for the same host subset combination"),
    c("KIA0202", Error, "This host has no matching entry in the service registry (service, workload or service entries)"),
    c("KIA0203", Error, "This subset's labels are not found in any matching host"),
    c("KIA0205", Error, "PeerAuthentication enabling mTLS at mesh level is missing"),
    c("KIA0206", Error, "PeerAuthentication enabling namespace-wide mTLS is missing"),
    c("KIA0207", Error, "PeerAuthentication with TLS strict mode found, it should be permissive"),
    c("KIA0208", Error, "PeerAuthentication enabling mTLS found, permissive mode needed"),
    c("KIA0209", Warning, "This subset has not labels"),
    // Gateway.
    c("KIA0301", Warning, "More than one Gateway for the same host port combination"),
    c("KIA0302", Warning, "No matching workload found for gateway selector in this namespace"),
    // PeerAuthentication.
    c("KIA0401", Error, "Mesh-wide Destination Rule enabling mTLS is missing"),
    c("KIA0501", Error, "Destination Rule enabling namespace-wide mTLS is missing"),
    c("KIA0505", Error, "Destination Rule disabling namespace-wide mTLS is missing"),
    c("KIA0506", Error, "Destination Rule disabling mesh-wide mTLS is missing"),
    // Ports (Kubernetes Service only: ServiceEntry port names are free-form).
    c("KIA0601", Error, "Port name must follow <protocol>[-suffix] form"),
    c("KIA0602", Error, "Port appProtocol must follow <protocol> form"),
    // Sidecar.
    c("KIA1004", Warning, "This host has no matching entry in the service registry"),
    c("KIA1006", Warning, "Global default sidecar should not have workloadSelector"),
    // VirtualService.
    c("KIA1101", Error, "DestinationWeight on route doesn't have a valid service (host not found)"),
    c("KIA1102", Error, "VirtualService is pointing to a non-existent gateway"),
    c("KIA1104", Warning, "The weight is assumed to be 100 because there is only one route destination"),
    c("KIA1105", Warning, "This host subset combination is already referenced in another route destination"),
    c("KIA1106", Warning, "More than one Virtual Service for same host"),
    c("KIA1107", Warning, "Subset not found"),
    c("KIA1108", Info, "Preferred nomenclature: <gateway namespace>/<gateway name>"),
    // ServiceEntry.
    c("KIA1201", Warning, "Missing one or more addresses from matching WorkloadEntries"),
    c("KIA1211", Warning, "More than one ServiceEntry for the same host and port"),
    c("KIA1212", Error, "ServiceEntries for the same host and port declare different protocols"),
    // meshlens.
    c("ML0001", Warning, "Route weights do not sum to 100"),
    c("ML0002", Warning, "Route is unreachable: an earlier route matches every request"),
    c("ML0003", Error, "Invalid regular expression (RE2 syntax)"),
    c("ML0004", Error, "Mirror destination host not found in the service registry"),
    c("ML0005", Error, "Percentage out of range [0, 100]"),
    c("ML0006", Warning, "Retries cannot complete within the route timeout (perTryTimeout x attempts > timeout)"),
    c("ML0007", Error, "Config does not load"),
    c("ML0008", Warning, "Kind not validated by meshlens"),
];
