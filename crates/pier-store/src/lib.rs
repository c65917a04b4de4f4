//! pier-store
