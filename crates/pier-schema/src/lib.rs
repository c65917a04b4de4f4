//! pier-schema
