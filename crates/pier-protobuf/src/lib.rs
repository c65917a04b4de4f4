//! pier-protobuf
