//! Column definitions of each printer, in upstream's order with upstream's names, types,
//! formats, priorities and descriptions (`pkg/printers/internalversion/printers.go`).

use serde::{Deserialize, Serialize};

use crate::descriptions::*;

/// One column of a Table: `meta.k8s.io/v1` `TableColumnDefinition`.
///
/// kubectl prints `name` upper-cased as the header and shows columns of `priority` above
/// 0 only with `-o wide`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    /// Human-readable name, e.g. `Cluster-IP` (kubectl upper-cases it).
    pub name: String,
    /// OpenAPI type of the cells: `string`, `integer`, `boolean`, `number`, `date`.
    #[serde(rename = "type")]
    pub type_: String,
    /// OpenAPI format: `name` for the column that holds the object's name, else empty.
    pub format: String,
    pub description: String,
    /// 0 for default columns, 1 for those only `-o wide` shows.
    pub priority: i32,
}

impl Column {
    fn new(name: &str, type_: &str, description: &str) -> Self {
        Column {
            name: name.to_string(),
            type_: type_.to_string(),
            format: String::new(),
            description: description.to_string(),
            priority: 0,
        }
    }

    fn string(name: &str, description: &str) -> Self {
        Self::new(name, "string", description)
    }

    fn integer(name: &str, description: &str) -> Self {
        Self::new(name, "integer", description)
    }

    fn wide(mut self) -> Self {
        self.priority = 1;
        self
    }

    fn name_column() -> Self {
        let mut c = Self::string("Name", META_NAME);
        c.format = "name".to_string();
        c
    }

    fn age() -> Self {
        Self::string("Age", META_CREATION)
    }
}

/// Which printer renders objects of a group and kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Printer {
    ConfigMap,
    Endpoints,
    /// Core `v1` Events and `events.k8s.io` Events share a printer upstream (one internal
    /// type); the flag says which field names the object uses.
    Event {
        events_api: bool,
    },
    Namespace,
    Node,
    Pod,
    ReplicationController,
    Secret,
    ServiceAccount,
    Service,
    Deployment,
    ReplicaSet,
    Lease,
    EndpointSlice,
    IngressClass,
    Ingress,
    /// Upstream's default table convertor: Name and Created At.
    Default,
}

impl Printer {
    pub(crate) fn for_kind(group: &str, kind: &str) -> Self {
        match (group, kind) {
            ("", "ConfigMap") => Printer::ConfigMap,
            ("", "Endpoints") => Printer::Endpoints,
            ("", "Event") => Printer::Event { events_api: false },
            ("events.k8s.io", "Event") => Printer::Event { events_api: true },
            ("", "Namespace") => Printer::Namespace,
            ("", "Node") => Printer::Node,
            ("", "Pod") => Printer::Pod,
            ("", "ReplicationController") => Printer::ReplicationController,
            ("", "Secret") => Printer::Secret,
            ("", "ServiceAccount") => Printer::ServiceAccount,
            ("", "Service") => Printer::Service,
            ("apps", "Deployment") => Printer::Deployment,
            ("apps", "ReplicaSet") => Printer::ReplicaSet,
            ("coordination.k8s.io", "Lease") => Printer::Lease,
            ("discovery.k8s.io", "EndpointSlice") => Printer::EndpointSlice,
            ("networking.k8s.io", "IngressClass") => Printer::IngressClass,
            ("networking.k8s.io", "Ingress") => Printer::Ingress,
            _ => Printer::Default,
        }
    }
}

/// Whether objects of this group and kind have a dedicated printer; the others get
/// upstream's default columns (Name, Created At).
pub fn has_printer(group: &str, kind: &str) -> bool {
    Printer::for_kind(group, kind) != Printer::Default
}

const CONTAINERS: &str = "Names of each container in the template.";
const IMAGES: &str = "Images referenced by each container in the template.";

/// The columns of the Table for objects of `group` (empty for core) and `kind`, wide
/// columns (`priority: 1`) included, as upstream always sends them.
pub fn column_definitions(group: &str, kind: &str) -> Vec<Column> {
    use Column as C;
    match Printer::for_kind(group, kind) {
        Printer::Pod => vec![
            C::name_column(),
            C::string("Ready", "The aggregate readiness state of this pod for accepting traffic."),
            C::string("Status", "The aggregate status of the containers in this pod."),
            C::string(
                "Restarts",
                "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
            ),
            C::age(),
            C::string("IP", POD_IP).wide(),
            C::string("Node", POD_NODE_NAME).wide(),
            C::string("Nominated Node", POD_NOMINATED).wide(),
            C::string("Readiness Gates", POD_READINESS_GATES).wide(),
        ],
        Printer::ReplicationController => vec![
            C::name_column(),
            C::integer("Desired", RC_SPEC_REPLICAS),
            C::integer("Current", RC_STATUS_REPLICAS),
            C::integer("Ready", RC_STATUS_READY),
            C::age(),
            C::string("Containers", CONTAINERS).wide(),
            C::string("Images", IMAGES).wide(),
            C::string("Selector", RC_SPEC_SELECTOR).wide(),
        ],
        Printer::ReplicaSet => vec![
            C::name_column(),
            C::integer("Desired", RS_SPEC_REPLICAS),
            C::integer("Current", RS_STATUS_REPLICAS),
            C::integer("Ready", RS_STATUS_READY),
            C::age(),
            C::string("Containers", CONTAINERS).wide(),
            C::string("Images", IMAGES).wide(),
            C::string("Selector", RS_SPEC_SELECTOR).wide(),
        ],
        Printer::Deployment => vec![
            C::name_column(),
            C::string("Ready", "Number of the pod with ready state"),
            C::string("Up-to-date", DEPLOY_UPDATED),
            C::string("Available", DEPLOY_AVAILABLE),
            C::age(),
            C::string("Containers", CONTAINERS).wide(),
            C::string("Images", IMAGES).wide(),
            C::string("Selector", DEPLOY_SELECTOR).wide(),
        ],
        Printer::Service => vec![
            C::name_column(),
            C::string("Type", SVC_TYPE),
            C::string("Cluster-IP", SVC_CLUSTER_IP),
            C::string("External-IP", SVC_EXTERNAL_IPS),
            C::string("Port(s)", SVC_PORTS),
            C::age(),
            C::string("Selector", SVC_SELECTOR).wide(),
        ],
        Printer::Ingress => vec![
            C::name_column(),
            C::string(
                "Class",
                "The name of the IngressClass resource that should be used for additional configuration",
            ),
            C::string("Hosts", "Hosts that incoming requests are matched against before the ingress rule"),
            C::string("Address", "Address is a list containing ingress points for the load-balancer"),
            C::string("Ports", "Ports of TLS configurations that open"),
            C::age(),
        ],
        Printer::IngressClass => vec![
            C::name_column(),
            C::string("Controller", "Controller that is responsible for handling this class"),
            C::string("Parameters", "A reference to a resource with additional parameters"),
            C::age(),
        ],
        Printer::Endpoints => vec![C::name_column(), C::string("Endpoints", EP_SUBSETS), C::age()],
        Printer::Node => vec![
            C::name_column(),
            C::string("Status", "The status of the node"),
            C::string("Roles", "The roles of the node"),
            C::age(),
            C::string("Version", NODE_KUBELET_VERSION),
            C::string("Internal-IP", NODE_ADDRESSES).wide(),
            C::string("External-IP", NODE_ADDRESSES).wide(),
            C::string("OS-Image", NODE_OS_IMAGE).wide(),
            C::string("Kernel-Version", NODE_KERNEL).wide(),
            C::string("Container-Runtime", NODE_RUNTIME).wide(),
        ],
        Printer::Event { .. } => vec![
            C::string("Last Seen", EV_LAST),
            C::string("Type", EV_TYPE),
            C::string("Reason", EV_REASON),
            C::string("Object", EV_INVOLVED),
            C::string("Subobject", EV_FIELD_PATH).wide(),
            C::string("Source", EV_SOURCE).wide(),
            C::string("Message", EV_MESSAGE),
            C::string("First Seen", EV_FIRST).wide(),
            C::string("Count", EV_COUNT).wide(),
            C::name_column().wide(),
        ],
        Printer::Namespace => vec![
            C::name_column(),
            C::string("Status", "The status of the namespace"),
            C::age(),
        ],
        Printer::Secret => vec![
            C::name_column(),
            C::string("Type", SECRET_TYPE),
            C::string("Data", SECRET_DATA),
            C::age(),
        ],
        Printer::ServiceAccount => vec![C::name_column(), C::string("Secrets", SA_SECRETS), C::age()],
        Printer::ConfigMap => vec![C::name_column(), C::string("Data", CM_DATA), C::age()],
        Printer::Lease => vec![C::name_column(), C::string("Holder", LEASE_HOLDER), C::age()],
        Printer::EndpointSlice => vec![
            C::name_column(),
            C::string("AddressType", EPS_ADDRESS_TYPE),
            C::string("Ports", EPS_PORTS),
            C::string("Endpoints", EPS_ENDPOINTS),
            C::age(),
        ],
        Printer::Default => vec![C::name_column(), C::new("Created At", "date", META_CREATION)],
    }
}
