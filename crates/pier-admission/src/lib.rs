//! pier-admission
