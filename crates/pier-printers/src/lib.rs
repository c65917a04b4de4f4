//! pier-printers
