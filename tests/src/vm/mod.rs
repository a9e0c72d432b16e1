//! Real kernels under qemu for the VM matrix (`cargo xtask vmtest`):
//! [`image`] builds what they boot (Debian's kernels, a Debian root file
//! system with systemd, cached outside the tree), [`qemu`] boots one guest
//! on a tap of a [`Lab`](crate::lab::Lab) bridge and runs commands in it.

pub mod image;
pub mod qemu;
