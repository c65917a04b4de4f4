//! pier-apiserver
