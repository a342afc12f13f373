"""MSA Explorer (placeholder until the app issue lands): runs the engine on a toy game."""
import streamlit as st
import torch

from msa_core import shapley_modes

st.set_page_config(page_title="MSA Explorer", layout="wide")
st.title("MSA Explorer")
st.write("The engine on a toy game: v(S) = [0 and 1 both intact] + 0.5 * [2 intact].")


def toy_game(coalitions: torch.Tensor) -> torch.Tensor:
    return (coalitions[:, 0] & coalitions[:, 1]).double() + 0.5 * coalitions[:, 2].double()


result = shapley_modes(toy_game, 4, method="exact")
st.bar_chart({"Shapley value": result.values.tolist()})
