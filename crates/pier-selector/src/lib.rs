//! pier-selector
